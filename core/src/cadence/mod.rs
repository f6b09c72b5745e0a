//! Cadence: model loads spaced out in time. One policy and one decision,
//! shared by the injected guard (what it sees in its own process) and the
//! cross-process file `cadence.json` (what any process marked).
//!
//! - [`burst`]: recognising a load or an unload from allocations and frees.
//! - [`rule`]: the policy, the decision and the action a mode takes.
//! - [`load_file`]: `cadence.json`, the atomic cross-process check-and-mark.

pub mod burst;
pub mod load_file;
pub mod rule;
