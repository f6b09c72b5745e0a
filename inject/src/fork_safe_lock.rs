//! `ForkSafeLock`: the library's only kind of lock, for install-time and
//! writer-side critical sections (hooking a new class, the log file). It is
//! an atomic flag, so a forked child can reset it
//! ([`ForkSafeLock::reset_after_fork`]): the thread that held it at `fork`
//! does not exist there, and a `std::sync::Mutex` it held would stay locked
//! for ever.
//!
//! No hook holds one across an original call. Each guard counts itself in a
//! per-thread counter ([`locks_held_by_this_thread`]), so a test's fake
//! original IMP can prove that.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::Duration;

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// How many `ForkSafeLock`s the calling thread holds now.
pub fn locks_held_by_this_thread() -> u32 {
    HELD.try_with(Cell::get).unwrap_or(0)
}

#[derive(Debug, Default)]
pub struct ForkSafeLock {
    held: AtomicBool,
}

/// Holds the lock until dropped.
#[must_use]
pub struct ForkSafeLockGuard<'a>(&'a ForkSafeLock);

impl ForkSafeLock {
    pub const fn new() -> Self {
        ForkSafeLock {
            held: AtomicBool::new(false),
        }
    }

    /// Takes the lock: spins, yields, then sleeps in short steps.
    pub fn lock(&self) -> ForkSafeLockGuard<'_> {
        let mut spins = 0u32;
        while self
            .held
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 16 {
                std::hint::spin_loop();
            } else if spins < 80 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let _ = HELD.try_with(|c| c.set(c.get() + 1));
        ForkSafeLockGuard(self)
    }

    /// Only in a child's `pthread_atfork` handler (one thread exists).
    pub fn reset_after_fork(&self) {
        self.held.store(false, Release);
    }
}

impl Drop for ForkSafeLockGuard<'_> {
    fn drop(&mut self) {
        let _ = HELD.try_with(|c| c.set(c.get().saturating_sub(1)));
        self.0.held.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_and_counts() {
        let lock = Arc::new(ForkSafeLock::new());
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _g = lock.lock();
                        let v = counter.load(Relaxed);
                        counter.store(v + 1, Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Relaxed), 20_000);
        let g = lock.lock();
        assert_eq!(locks_held_by_this_thread(), 1);
        drop(g);
        assert_eq!(locks_held_by_this_thread(), 0);
    }

    #[test]
    fn a_child_resets_a_lock_held_by_a_vanished_thread() {
        let lock = ForkSafeLock::new();
        std::mem::forget(lock.lock());
        lock.reset_after_fork();
        let _g = lock.lock();
    }
}
