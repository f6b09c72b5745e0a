//! A bounded multi-producer queue of fixed-size items in one allocation made
//! at creation (D. Vyukov's bounded MPMC queue): a push or a pop is a CAS on
//! a position and a store of the cell's sequence number, no lock and no heap
//! allocation. A full queue refuses the item (the caller counts it).
//!
//! After `fork` the child calls [`EventQueue::forget_after_fork`]: the
//! threads that were pushing or popping stayed in the parent, and the items
//! still queued belong to the parent (its writer writes them), so the child
//! starts empty.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering::*};

struct Cell<T> {
    seq: AtomicUsize,
    item: UnsafeCell<MaybeUninit<T>>,
}

pub struct EventQueue<T> {
    cells: Box<[Cell<T>]>,
    mask: usize,
    head: AtomicUsize,
    tail: AtomicUsize,
}

// SAFETY: an item is written by the one producer that won its position and
// read by the one consumer that won it; the cell's sequence number
// (release/acquire) orders the two. Items move between threads: `T: Send`.
unsafe impl<T: Send> Sync for EventQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for EventQueue<T> {}

impl<T> EventQueue<T> {
    /// A queue of `capacity` items (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2).next_power_of_two();
        EventQueue {
            cells: (0..capacity)
                .map(|i| Cell {
                    seq: AtomicUsize::new(i),
                    item: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            mask: capacity - 1,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Appends `item`; `Err(item)` when the queue is full.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut pos = self.tail.load(Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            let seq = cell.seq.load(Acquire);
            let diff = seq as isize - pos as isize;
            if diff == 0 {
                match self
                    .tail
                    .compare_exchange_weak(pos, pos + 1, Relaxed, Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: this thread won position `pos`; no one
                        // reads the cell until `seq` says it is full.
                        unsafe { (*cell.item.get()).write(item) };
                        cell.seq.store(pos + 1, Release);
                        return Ok(());
                    }
                    Err(p) => pos = p,
                }
            } else if diff < 0 {
                return Err(item);
            } else {
                pos = self.tail.load(Relaxed);
            }
        }
    }

    /// Takes the oldest item, if any.
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.head.load(Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            let seq = cell.seq.load(Acquire);
            let diff = seq as isize - (pos + 1) as isize;
            if diff == 0 {
                match self
                    .head
                    .compare_exchange_weak(pos, pos + 1, Relaxed, Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: this thread won position `pos` and the
                        // producer published the item (`seq == pos + 1`).
                        let item = unsafe { (*cell.item.get()).assume_init_read() };
                        cell.seq.store(pos + self.mask + 1, Release);
                        return Some(item);
                    }
                    Err(p) => pos = p,
                }
            } else if diff < 0 {
                return None;
            } else {
                pos = self.head.load(Relaxed);
            }
        }
    }

    /// Only in a child's `pthread_atfork` handler (one thread exists):
    /// empties the queue without touching the items (the parent's; any heap
    /// memory they own is leaked in the child, never freed twice).
    pub fn forget_after_fork(&self) {
        for (i, cell) in self.cells.iter().enumerate() {
            cell.seq.store(i, Relaxed);
        }
        self.head.store(0, Relaxed);
        self.tail.store(0, Release);
    }
}

impl<T> Drop for EventQueue<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_full_and_empty() {
        let q = EventQueue::new(4);
        assert_eq!(q.capacity(), 4);
        for i in 0..4 {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(9), Err(9));
        assert_eq!(q.pop(), Some(0));
        q.push(4).unwrap();
        assert_eq!(
            (1..=4).map(|_| q.pop().unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn forget_after_fork_starts_empty() {
        let q = EventQueue::new(8);
        q.push(1).unwrap();
        q.push(2).unwrap();
        q.pop();
        q.forget_after_fork();
        assert_eq!(q.pop(), None);
        q.push(3).unwrap();
        assert_eq!(q.pop(), Some(3));
    }

    #[test]
    fn producers_and_a_consumer_lose_nothing() {
        let q = Arc::new(EventQueue::new(64));
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        while q.push(p * 1_000_000 + i).is_err() {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut last = [None::<u64>; 3];
        let mut n = 0;
        while n < 30_000 {
            if let Some(v) = q.pop() {
                let (p, i) = ((v / 1_000_000) as usize, v % 1_000_000);
                assert!(last[p].is_none_or(|l| l < i), "per-producer order");
                last[p] = Some(i);
                n += 1;
            }
        }
        producers.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(q.pop(), None);
    }
}
