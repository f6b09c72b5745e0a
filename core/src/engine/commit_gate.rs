//! `CommitGate`: lets the residency reaper run a removal while no command
//! buffer is being committed, without a lock on the commit path.
//!
//! A committing thread announces itself with one atomic increment and checks
//! the gate; the reaper closes the gate and waits for announced commits to
//! leave. Both sides use sequentially consistent operations (Dekker-style),
//! so either the committer sees the gate closed or the reaper sees the
//! committer. Committers wait only while the reaper holds the gate, which it
//! does for a bounded time.
//!
//! The injected library uses a second gate of this type around the
//! application's residency-set calls: the reaper closes it while it performs
//! deferred removals, so its calls into a set never overlap the
//! application's, and no lock is held across either side's call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct CommitGate {
    closed: AtomicBool,
    inside: AtomicU64,
}

/// Held by a committing thread for the length of the original `commit`.
#[must_use]
pub struct CommitPass<'a>(&'a CommitGate);

impl Drop for CommitPass<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, SeqCst);
    }
}

impl CommitGate {
    pub const fn new() -> Self {
        Self {
            closed: AtomicBool::new(false),
            inside: AtomicU64::new(0),
        }
    }

    /// Enters the gate; waits (yield, then short sleeps) while it is closed.
    #[inline]
    pub fn enter(&self) -> CommitPass<'_> {
        let mut spins = 0u32;
        loop {
            self.inside.fetch_add(1, SeqCst);
            if !self.closed.load(SeqCst) {
                return CommitPass(self);
            }
            self.inside.fetch_sub(1, SeqCst);
            while self.closed.load(SeqCst) {
                spins += 1;
                if spins < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }

    /// [`enter`](Self::enter), waiting at most `limit` while the gate is
    /// closed; `None` when it stayed closed that long (the caller fails
    /// open: goes on without a pass).
    #[inline]
    pub fn enter_within(&self, limit: Duration) -> Option<CommitPass<'_>> {
        self.inside.fetch_add(1, SeqCst);
        if !self.closed.load(SeqCst) {
            return Some(CommitPass(self));
        }
        self.inside.fetch_sub(1, SeqCst);
        self.enter_within_slow(limit)
    }

    #[cold]
    fn enter_within_slow(&self, limit: Duration) -> Option<CommitPass<'_>> {
        let deadline = Instant::now() + limit;
        let mut spins = 0u32;
        loop {
            while self.closed.load(SeqCst) {
                if Instant::now() >= deadline {
                    return None;
                }
                spins += 1;
                if spins < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            self.inside.fetch_add(1, SeqCst);
            if !self.closed.load(SeqCst) {
                return Some(CommitPass(self));
            }
            self.inside.fetch_sub(1, SeqCst);
        }
    }

    /// In a child process after `fork`: the threads that held passes or
    /// closed the gate do not exist there, so the gate starts open and empty.
    pub fn reset_after_fork(&self) {
        self.inside.store(0, SeqCst);
        self.closed.store(false, SeqCst);
    }

    /// Passes held now (tests: nothing is inside the gate).
    pub fn passes_held(&self) -> u64 {
        self.inside.load(SeqCst)
    }

    /// Closes the gate and waits until no commit is in progress. Returns
    /// `false` (gate reopened) if that takes longer than `timeout`.
    pub fn close(&self, timeout: Duration) -> bool {
        self.closed.store(true, SeqCst);
        let deadline = Instant::now() + timeout;
        while self.inside.load(SeqCst) != 0 {
            if Instant::now() >= deadline {
                self.open();
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    pub fn open(&self) {
        self.closed.store(false, SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn closed_gate_excludes_commits() {
        let gate = Arc::new(CommitGate::new());
        let stop = Arc::new(AtomicBool::new(false));
        let entered = Arc::new(AtomicU64::new(0));
        let committers: Vec<_> = (0..2)
            .map(|_| {
                let (gate, stop, entered) = (gate.clone(), stop.clone(), entered.clone());
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        let _pass = gate.enter();
                        entered.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            assert!(gate.close(Duration::from_secs(5)));
            let before = entered.load(SeqCst);
            std::thread::sleep(Duration::from_micros(200));
            assert_eq!(gate.inside.load(SeqCst), 0);
            assert_eq!(
                entered.load(SeqCst),
                before,
                "a commit got through a closed gate"
            );
            gate.open();
        }
        stop.store(true, SeqCst);
        committers.into_iter().for_each(|h| h.join().unwrap());
        assert!(entered.load(SeqCst) > 0);
    }

    #[test]
    fn enter_within_gives_up_while_closed_and_reset_reopens() {
        let gate = CommitGate::new();
        assert!(gate.close(Duration::from_millis(10)));
        assert!(gate.enter_within(Duration::from_millis(5)).is_none());
        gate.reset_after_fork();
        let pass = gate.enter_within(Duration::from_millis(5));
        assert!(pass.is_some());
        assert_eq!(gate.passes_held(), 1);
        drop(pass);
        assert_eq!(gate.passes_held(), 0);
    }

    #[test]
    fn close_times_out_and_reopens() {
        let gate = CommitGate::new();
        let pass = gate.enter();
        assert!(!gate.close(Duration::from_millis(10)));
        assert!(!gate.is_closed());
        drop(pass);
        assert!(gate.close(Duration::from_millis(10)));
    }
}
