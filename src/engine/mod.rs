//! The guard's policy engine: pure decisions (allocation ledger, size
//! ceiling, cadence, teardown watermark) with an injected clock, so the
//! injected library stays a thin layer of hooks and every rule is unit-tested
//! here.
