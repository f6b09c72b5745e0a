//! Recognising a model load (a burst of large allocations after a quiet
//! spell) and an unload (a burst of frees or residency removals that gives
//! back most of what was live). Lock-free: the hooks feed it directly.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What counts as a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstShape {
    /// Events below this many bytes are not part of any burst.
    pub min_bytes: u64,
    /// This many qualifying events ...
    pub count: u64,
    /// ... within this window from the first one make a burst.
    pub window_ns: u64,
    /// A burst starts only after this long without a qualifying event.
    pub quiet_ns: u64,
}

/// Lock-free burst recogniser: feed it qualifying events (large allocations
/// for loads; large frees or residency removals for unloads). It reports a
/// burst exactly once, on the event that completes it.
#[derive(Debug, Default)]
pub struct BurstDetector {
    /// Time of the previous qualifying event, +1 so 0 means "never".
    last_event: AtomicU64,
    burst_start: AtomicU64,
    burst_count: AtomicU64,
    burst_bytes: AtomicU64,
}

/// A recognised burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// When its first event happened.
    pub started_ns: u64,
    /// Events seen up to and including the one that completed it.
    pub events: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl BurstDetector {
    pub const fn new() -> Self {
        Self {
            last_event: AtomicU64::new(0),
            burst_start: AtomicU64::new(0),
            burst_count: AtomicU64::new(0),
            burst_bytes: AtomicU64::new(0),
        }
    }

    /// When the latest qualifying event happened, if any.
    pub fn last_event_ns(&self) -> Option<u64> {
        match self.last_event.load(Relaxed) {
            0 => None,
            t => Some(t - 1),
        }
    }

    /// Marks `now_ns` as the latest event without counting one: after the
    /// guard stalls a load, the stall itself must not read as the quiet
    /// spell that starts a new burst.
    pub fn touch(&self, now_ns: u64) {
        if self.last_event.load(Relaxed) != 0 {
            self.last_event.fetch_max(now_ns.saturating_add(1), Relaxed);
        }
    }

    /// Records one event of `bytes` at `now_ns`; returns the burst it completes, if any.
    #[inline]
    pub fn record(&self, shape: &BurstShape, bytes: u64, now_ns: u64) -> Option<Burst> {
        if bytes < shape.min_bytes {
            return None;
        }
        let prev = self.last_event.swap(now_ns.saturating_add(1), Relaxed);
        let after_quiet = prev == 0 || now_ns.saturating_sub(prev - 1) >= shape.quiet_ns;
        let (count, sum) = if after_quiet {
            self.burst_start.store(now_ns, Relaxed);
            self.burst_count.store(1, Relaxed);
            self.burst_bytes.store(bytes, Relaxed);
            (1, bytes)
        } else {
            (
                self.burst_count.fetch_add(1, Relaxed) + 1,
                self.burst_bytes
                    .fetch_add(bytes, Relaxed)
                    .saturating_add(bytes),
            )
        };
        let started = self.burst_start.load(Relaxed);
        (count == shape.count && now_ns.saturating_sub(started) <= shape.window_ns).then_some(
            Burst {
                started_ns: started,
                events: count,
                bytes: sum,
            },
        )
    }
}

/// Whether a burst of frees was a model unload rather than a cache trim:
/// an unload gives back at least `min_fraction` of what was live before the
/// burst began (the weights go); a trim leaves the weights in place.
/// Decided at the first large allocation after the burst, when the unload
/// (if it is one) has happened.
pub fn is_unload(live_before: u64, live_now: u64, min_fraction: f64) -> bool {
    if live_before == 0 {
        return false;
    }
    let freed = live_before.saturating_sub(live_now);
    freed as f64 >= min_fraction * live_before as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SHAPE: BurstShape = BurstShape {
        min_bytes: 1000,
        count: 3,
        window_ns: 100 * MS,
        quiet_ns: 500 * MS,
    };

    #[test]
    fn burst_after_quiet_is_reported_once() {
        let d = BurstDetector::new();
        let t0 = 10_000 * MS;
        assert_eq!(d.record(&SHAPE, 5000, t0), None);
        assert_eq!(
            d.record(&SHAPE, 10, t0 + MS),
            None,
            "small events do not count"
        );
        assert_eq!(d.record(&SHAPE, 5000, t0 + 2 * MS), None);
        assert_eq!(
            d.record(&SHAPE, 5000, t0 + 3 * MS),
            Some(Burst {
                started_ns: t0,
                events: 3,
                bytes: 15000
            })
        );
        assert_eq!(d.record(&SHAPE, 5000, t0 + 4 * MS), None, "reported once");
    }

    #[test]
    fn an_unload_gives_back_most_of_what_was_live() {
        assert!(is_unload(1000, 0, 0.5));
        assert!(is_unload(1000, 500, 0.5));
        assert!(
            !is_unload(1000, 501, 0.5),
            "a cache trim leaves the weights"
        );
        assert!(!is_unload(0, 0, 0.5));
        assert!(is_unload(1000, 2000, 0.0), "fraction 0: every burst counts");
    }

    #[test]
    fn touch_bridges_a_stall() {
        let d = BurstDetector::new();
        let t0 = 10_000 * MS;
        d.record(&SHAPE, 5000, t0);
        d.touch(t0 + 800 * MS); // a stall longer than the quiet spell
        d.record(&SHAPE, 5000, t0 + 801 * MS);
        assert_eq!(d.last_event_ns(), Some(t0 + 801 * MS));
        // Still the same burst (started at t0), now outside its window.
        assert_eq!(d.record(&SHAPE, 5000, t0 + 802 * MS), None);
        let fresh = BurstDetector::new();
        fresh.touch(t0);
        assert_eq!(fresh.last_event_ns(), None, "touch never invents an event");
    }

    #[test]
    fn slow_trickle_is_not_a_burst() {
        let d = BurstDetector::new();
        let t0 = 10_000 * MS;
        d.record(&SHAPE, 5000, t0);
        d.record(&SHAPE, 5000, t0 + 90 * MS);
        assert_eq!(
            d.record(&SHAPE, 5000, t0 + 180 * MS),
            None,
            "outside window"
        );
    }

    #[test]
    fn a_new_burst_needs_quiet_first() {
        let d = BurstDetector::new();
        let t0 = 10_000 * MS;
        for i in 0..3 {
            d.record(&SHAPE, 5000, t0 + i * MS);
        }
        // Continuous traffic: no second burst.
        for i in 3..50 {
            assert_eq!(d.record(&SHAPE, 5000, t0 + i * 10 * MS), None);
        }
        // After quiet, a new burst is recognised.
        let t1 = t0 + 2000 * MS;
        d.record(&SHAPE, 5000, t1);
        d.record(&SHAPE, 5000, t1 + MS);
        assert!(d.record(&SHAPE, 5000, t1 + 2 * MS).is_some());
    }
}
