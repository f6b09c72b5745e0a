//! The deferred residency removals waiting for the reaper: a fixed-capacity,
//! lock-free table allocated once (a `static`-sized array inside the guard),
//! so queueing, cancelling and draining never touch the heap or a lock.
//!
//! Each slot has a state atomic:
//!
//! - `FREE` -> `WRITING` (a hook claimed it with a CAS and fills the fields)
//!   -> `QUEUED` (published with release ordering);
//! - `QUEUED` -> `CLAIMED` by exactly one of: the hook that cancels the
//!   removal (the application added the allocation back), or the reaper that
//!   performs it; the winner reads the fields and frees the slot.
//!
//! A removal's home slot is a hash of (set, allocation), probed linearly for
//! at most [`PROBE`] slots, so a cancel looks at a bounded window instead of
//! the whole table. A removal that finds no free slot in its window is not
//! queued ([`RemovalRing::push`] hands it back): the caller falls back to the
//! synchronous path and counts it. Order: the reaper performs a batch only
//! once the watermark has passed the oldest tag of everything queued, so the
//! table needs no FIFO order; [`RemovalRing::oldest`] scans for the minimum.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// Removals that can wait at once (MLX removes a few hundred at an unload).
pub const CAPACITY: usize = 4096;
/// Slots a push or a cancel probes from the home slot.
pub const PROBE: usize = 64;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const QUEUED: u8 = 2;
const CLAIMED: u8 = 3;

/// One deferred removal: the set, the allocation (both retained by the
/// hook), the original IMPs to call, and its tag (the last command buffer
/// committed when it was requested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub set: usize,
    pub allocation: usize,
    pub remove_imp: usize,
    pub commit_imp: usize,
    pub tag: u64,
    /// When it was deferred (the guard's monotonic clock).
    pub queued_ns: u64,
}

struct Slot {
    state: AtomicU8,
    set: AtomicUsize,
    allocation: AtomicUsize,
    remove_imp: AtomicUsize,
    commit_imp: AtomicUsize,
    tag: AtomicU64,
    queued_ns: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU8::new(FREE),
            set: AtomicUsize::new(0),
            allocation: AtomicUsize::new(0),
            remove_imp: AtomicUsize::new(0),
            commit_imp: AtomicUsize::new(0),
            tag: AtomicU64::new(0),
            queued_ns: AtomicU64::new(0),
        }
    }

    /// Only by the thread that moved the state to `CLAIMED` or `WRITING`.
    fn read(&self) -> Removal {
        Removal {
            set: self.set.load(Relaxed),
            allocation: self.allocation.load(Relaxed),
            remove_imp: self.remove_imp.load(Relaxed),
            commit_imp: self.commit_imp.load(Relaxed),
            tag: self.tag.load(Relaxed),
            queued_ns: self.queued_ns.load(Relaxed),
        }
    }
}

pub struct RemovalRing {
    slots: Box<[Slot]>,
    queued: AtomicU64,
}

impl Default for RemovalRing {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RemovalRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemovalRing")
            .field("queued", &self.len())
            .finish()
    }
}

#[inline]
fn home(set: usize, allocation: usize) -> usize {
    // Fibonacci hashing of both pointers (their low bits are alignment).
    let h = (set as u64 ^ (allocation as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize % CAPACITY
}

impl RemovalRing {
    /// Allocates the table (the only allocation it ever makes).
    pub fn new() -> Self {
        RemovalRing {
            slots: (0..CAPACITY).map(|_| Slot::new()).collect(),
            queued: AtomicU64::new(0),
        }
    }

    /// Removals queued now.
    #[inline]
    pub fn len(&self) -> u64 {
        self.queued.load(Acquire)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `removal`; `Ok(true)` when the ring was empty before it (the
    /// reaper needs a wake-up), `Err(removal)` when its probe window is full.
    pub fn push(&self, removal: Removal) -> Result<bool, Removal> {
        let start = home(removal.set, removal.allocation);
        for i in 0..PROBE {
            let slot = &self.slots[(start + i) % CAPACITY];
            if slot.state.load(Relaxed) != FREE
                || slot
                    .state
                    .compare_exchange(FREE, WRITING, Acquire, Relaxed)
                    .is_err()
            {
                continue;
            }
            slot.set.store(removal.set, Relaxed);
            slot.allocation.store(removal.allocation, Relaxed);
            slot.remove_imp.store(removal.remove_imp, Relaxed);
            slot.commit_imp.store(removal.commit_imp, Relaxed);
            slot.tag.store(removal.tag, Relaxed);
            slot.queued_ns.store(removal.queued_ns, Relaxed);
            let before = self.queued.fetch_add(1, AcqRel);
            slot.state.store(QUEUED, Release);
            return Ok(before == 0);
        }
        Err(removal)
    }

    /// Takes back a queued removal of `allocation` from `set` (the
    /// application re-added it); `None` when none is queued or the reaper
    /// already claimed it.
    #[inline]
    pub fn cancel(&self, set: usize, allocation: usize) -> Option<Removal> {
        if self.is_empty() {
            return None;
        }
        let start = home(set, allocation);
        for i in 0..PROBE {
            let slot = &self.slots[(start + i) % CAPACITY];
            if slot.state.load(Acquire) != QUEUED
                || slot.set.load(Relaxed) != set
                || slot.allocation.load(Relaxed) != allocation
            {
                continue;
            }
            // The slot may have been reused between the check and the
            // claim: only a removal of this very pair is taken.
            if let Some(r) = self.claim_if(slot, |r| r.set == set && r.allocation == allocation) {
                return Some(r);
            }
        }
        None
    }

    fn claim(&self, slot: &Slot) -> Option<Removal> {
        self.claim_if(slot, |_| true)
    }

    /// Claims a queued slot; if `wanted` rejects what it holds, the slot is
    /// published again unchanged (nobody else touches a `CLAIMED` slot).
    fn claim_if(&self, slot: &Slot, wanted: impl Fn(&Removal) -> bool) -> Option<Removal> {
        slot.state
            .compare_exchange(QUEUED, CLAIMED, Acquire, Relaxed)
            .ok()?;
        let r = slot.read();
        if !wanted(&r) {
            slot.state.store(QUEUED, Release);
            return None;
        }
        self.queued.fetch_sub(1, AcqRel);
        slot.state.store(FREE, Release);
        Some(r)
    }

    /// The lowest tag and the earliest queue time among queued removals.
    pub fn oldest(&self) -> Option<(u64, u64)> {
        if self.is_empty() {
            return None;
        }
        let mut found: Option<(u64, u64)> = None;
        for slot in self.slots.iter() {
            if slot.state.load(Acquire) != QUEUED {
                continue;
            }
            let (tag, queued) = (slot.tag.load(Relaxed), slot.queued_ns.load(Relaxed));
            found = Some(match found {
                None => (tag, queued),
                Some((t, q)) => (t.min(tag), q.min(queued)),
            });
        }
        found
    }

    /// Claims every queued removal into `out` (the reaper's batch buffer,
    /// reserved once); returns how many it took.
    pub fn take_all(&self, out: &mut Vec<Removal>) -> usize {
        let before = out.len();
        if self.is_empty() {
            return 0;
        }
        for slot in self.slots.iter() {
            if slot.state.load(Acquire) == QUEUED {
                if let Some(r) = self.claim(slot) {
                    out.push(r);
                }
            }
        }
        out.len() - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn removal(set: usize, allocation: usize, tag: u64) -> Removal {
        Removal {
            set,
            allocation,
            remove_imp: 1,
            commit_imp: 2,
            tag,
            queued_ns: tag * 10,
        }
    }

    #[test]
    fn push_cancel_and_take() {
        let ring = RemovalRing::new();
        assert!(ring.push(removal(0x1000, 0x2000, 3)).unwrap(), "was empty");
        assert!(!ring.push(removal(0x1000, 0x3000, 5)).unwrap());
        ring.push(removal(0x1000, 0x4000, 4)).unwrap();
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.oldest(), Some((3, 30)));
        assert_eq!(ring.cancel(0x1000, 0x9999), None);
        assert_eq!(
            ring.cancel(0x1000, 0x2000),
            Some(removal(0x1000, 0x2000, 3))
        );
        assert_eq!(ring.cancel(0x1000, 0x2000), None, "cancelled once");
        assert_eq!(ring.oldest(), Some((4, 40)));
        let mut out = Vec::with_capacity(CAPACITY);
        assert_eq!(ring.take_all(&mut out), 2);
        assert!(ring.is_empty());
        assert_eq!(ring.oldest(), None);
        out.sort_by_key(|r| r.tag);
        assert_eq!(
            out,
            vec![removal(0x1000, 0x4000, 4), removal(0x1000, 0x3000, 5)]
        );
    }

    #[test]
    fn a_full_window_hands_the_removal_back() {
        let ring = RemovalRing::new();
        // The same pair hashes to the same window: PROBE copies fill it.
        for _ in 0..PROBE {
            ring.push(removal(0x10, 0x20, 1)).unwrap();
        }
        assert_eq!(
            ring.push(removal(0x10, 0x20, 2)),
            Err(removal(0x10, 0x20, 2))
        );
        assert_eq!(ring.len(), PROBE as u64);
        let mut out = Vec::new();
        ring.take_all(&mut out);
        assert!(ring.push(removal(0x10, 0x20, 2)).is_ok(), "room again");
    }

    #[test]
    fn cancel_and_take_race_without_loss_or_duplication() {
        let ring = Arc::new(RemovalRing::new());
        let n = 20_000usize;
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut cancelled = 0usize;
                for i in 0..n {
                    let r = removal(0x8000, 0x10_0000 + i * 0x40, i as u64);
                    while ring.push(r).is_err() {
                        std::thread::yield_now();
                    }
                    if i % 3 == 0 && ring.cancel(r.set, r.allocation).is_some() {
                        cancelled += 1;
                    }
                }
                cancelled
            })
        };
        let mut taken = Vec::with_capacity(CAPACITY);
        let mut total = 0usize;
        while !producer.is_finished() || !ring.is_empty() {
            taken.clear();
            total += ring.take_all(&mut taken);
        }
        let cancelled = producer.join().unwrap();
        assert_eq!(total + cancelled, n);
    }
}
