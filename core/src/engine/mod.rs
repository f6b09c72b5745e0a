//! The guard's policy engine: pure decisions (allocation ledger, size
//! ceiling, teardown watermark; cadence is `crate::cadence`, shared with the
//! cross-process file) with an injected clock, so the
//! injected library stays a thin layer of hooks and every rule is unit-tested
//! here.
//!
//! "Injected clock" means every time-dependent call takes `now_ns`, a
//! monotonic nanosecond count the caller reads (the interposer uses
//! `CLOCK_MONOTONIC`); nothing here reads a clock itself.

pub mod ceiling;
pub mod commit_gate;
pub mod config;
pub mod ledger;
pub mod watermark;

/// Nanoseconds in one second, for callers converting configuration values.
pub const NS_PER_SEC: u64 = 1_000_000_000;
