//! State files: atomic writes (temp + fsync + rename + directory fsync),
//! versioned JSON and tolerant reads that warn and reset instead of crashing.

pub mod atomic_file;
pub mod durable_sync;
pub mod file_lock;
pub mod regular_file;
pub mod tolerant_json;
pub mod write_state;
