//! Which live allocation is how big: a fixed-capacity, lock-free,
//! open-addressing table from the address the driver handed out to its size
//! and memory kind, so a free (which names only the address) can be charged
//! back to the ledger. Static storage, atomics only: no heap allocation and
//! no lock on the allocation path.
//!
//! Keys are addresses (never 0 for a successful allocation); a removed entry
//! becomes a tombstone that later inserts reuse, and lookups probe past it.
//! When the probe limit is reached the allocation is left untracked (counted;
//! its free is then not charged), never blocked.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in the table: 2^17 live allocations (MLX keeps a few thousand at
/// most; its buffer cache reuses them). 2 MiB of `.bss`, touched on use.
const CAPACITY: usize = 1 << 17;
/// Slots examined before giving up on an insert or a lookup.
const PROBE_LIMIT: usize = 128;
const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;

/// What a tracked address holds, packed beside its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// `cuMemAlloc*`: device memory.
    Device = 0,
    /// `cuMemAllocManaged`: unified memory, charged like device memory.
    Managed = 1,
    /// `cuMemAllocHost`/`cuMemHostAlloc`: page-locked host memory.
    PinnedHost = 2,
}

const KIND_SHIFT: u32 = 62;
const SIZE_MASK: u64 = (1 << KIND_SHIFT) - 1;

impl MemoryKind {
    fn from_bits(bits: u64) -> MemoryKind {
        match bits {
            0 => MemoryKind::Device,
            1 => MemoryKind::Managed,
            _ => MemoryKind::PinnedHost,
        }
    }
}

/// One tracked allocation, as a free finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedAllocation {
    pub bytes: u64,
    pub kind: MemoryKind,
}

struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

/// The address -> size table. One per process (`LIVE_ALLOCATIONS`); tests
/// build their own.
pub struct PointerTable {
    slots: [Slot; CAPACITY],
}

/// The process-wide table the hooks use.
pub static LIVE_ALLOCATIONS: PointerTable = PointerTable::new();

fn home_slot(address: u64) -> usize {
    // Allocations are at least 256-byte aligned: drop the low bits, then
    // Fibonacci hashing spreads neighbouring addresses over the table.
    let mixed = (address >> 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - CAPACITY.trailing_zeros())) as usize
}

impl PointerTable {
    pub const fn new() -> PointerTable {
        PointerTable {
            slots: [const {
                Slot {
                    key: AtomicU64::new(EMPTY),
                    value: AtomicU64::new(0),
                }
            }; CAPACITY],
        }
    }

    /// Records `address` as `bytes` of `kind`. Returns false (and records
    /// nothing) when the address is 0 or no free slot is found within the
    /// probe limit.
    pub fn insert(&self, address: u64, bytes: u64, kind: MemoryKind) -> bool {
        if address == EMPTY || address == TOMBSTONE {
            return false;
        }
        let value = (bytes & SIZE_MASK) | ((kind as u64) << KIND_SHIFT);
        let start = home_slot(address);
        for step in 0..PROBE_LIMIT {
            let slot = &self.slots[(start + step) & (CAPACITY - 1)];
            let current = slot.key.load(Ordering::Acquire);
            if current == EMPTY || current == TOMBSTONE {
                // Publish the value before the key: a lookup that sees the
                // key then sees the value (Release/Acquire pair on `key`).
                // Two inserts never race for the same address (the driver
                // hands each address out once while it is live), but two
                // different addresses may race for this slot: the CAS decides.
                slot.value.store(value, Ordering::Relaxed);
                if slot
                    .key
                    .compare_exchange(current, address, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
            }
        }
        false
    }

    /// Forgets `address` and returns what it held, or None when it was not
    /// tracked (allocated before the hooks, or dropped by `insert`).
    pub fn remove(&self, address: u64) -> Option<TrackedAllocation> {
        if address == EMPTY || address == TOMBSTONE {
            return None;
        }
        let start = home_slot(address);
        for step in 0..PROBE_LIMIT {
            let slot = &self.slots[(start + step) & (CAPACITY - 1)];
            let current = slot.key.load(Ordering::Acquire);
            if current == EMPTY {
                return None;
            }
            if current == address {
                let value = slot.value.load(Ordering::Relaxed);
                if slot
                    .key
                    .compare_exchange(address, TOMBSTONE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(TrackedAllocation {
                        bytes: value & SIZE_MASK,
                        kind: MemoryKind::from_bits(value >> KIND_SHIFT),
                    });
                }
                return None;
            }
        }
        None
    }
}

impl Default for PointerTable {
    fn default() -> Self {
        PointerTable::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Box<PointerTable> {
        // 2 MiB: too big for a test thread's stack, so build it on the heap.
        let layout = std::alloc::Layout::new::<PointerTable>();
        // SAFETY: every field of PointerTable is an atomic integer, for which
        // all-zero bytes are a valid value (EMPTY keys, zero values); the
        // layout is PointerTable's own, so Box may own and free it.
        unsafe {
            let raw = std::alloc::alloc_zeroed(layout) as *mut PointerTable;
            assert!(!raw.is_null());
            Box::from_raw(raw)
        }
    }

    #[test]
    fn insert_then_remove_returns_size_and_kind() {
        let t = table();
        assert!(t.insert(0x7f00_0000_1000, 4096, MemoryKind::Managed));
        assert_eq!(
            t.remove(0x7f00_0000_1000),
            Some(TrackedAllocation {
                bytes: 4096,
                kind: MemoryKind::Managed
            })
        );
        assert_eq!(
            t.remove(0x7f00_0000_1000),
            None,
            "second free is not charged"
        );
    }

    #[test]
    fn unknown_and_null_addresses_are_not_tracked() {
        let t = table();
        assert!(!t.insert(0, 10, MemoryKind::Device));
        assert_eq!(t.remove(0xdead_0000), None);
    }

    #[test]
    fn colliding_addresses_survive_removal_of_their_neighbours() {
        let t = table();
        // Same home slot: addresses that differ only above the hashed bits
        // are not guaranteed to collide, so fill a dense run instead.
        let addresses: Vec<u64> = (1..=5000u64).map(|i| i << 8).collect();
        for (i, a) in addresses.iter().enumerate() {
            assert!(t.insert(*a, i as u64 + 1, MemoryKind::Device));
        }
        for a in addresses.iter().step_by(2) {
            assert!(t.remove(*a).is_some());
        }
        for (i, a) in addresses.iter().enumerate().skip(1).step_by(2) {
            assert_eq!(t.remove(*a).map(|x| x.bytes), Some(i as u64 + 1));
        }
        // Tombstones are reused.
        for a in &addresses {
            assert!(t.insert(*a, 7, MemoryKind::PinnedHost));
        }
    }

    #[test]
    fn concurrent_inserts_and_removes_balance() {
        let t: &'static PointerTable = Box::leak(table());
        let threads: Vec<_> = (0..4u64)
            .map(|th| {
                std::thread::spawn(move || {
                    let mut total = 0u64;
                    for round in 0..2000u64 {
                        let a = ((th << 40) | (round + 1)) << 8;
                        assert!(t.insert(a, round + 1, MemoryKind::Device));
                        total += t.remove(a).unwrap().bytes;
                    }
                    total
                })
            })
            .collect();
        for h in threads {
            assert_eq!(h.join().unwrap(), (1..=2000u64).sum::<u64>());
        }
    }
}
