//! The gates that stop a panic cascade: the one cooldown verdict, the circuit
//! breaker, the cadence guard and the MLX process lock, plus the small state
//! files they keep (ack, sentinel).
//!
//! Every gate reads its state tolerantly (damage is a one-line warning and a
//! reset, never a crash or a lockout that cannot be cleared) and writes it
//! atomically. Cross-process decisions hold a kernel file lock.

pub mod ack;
pub mod breaker;
pub mod cooldown;
pub mod mlx_lock;
pub mod panic_sources;
pub mod sentinel;
pub mod start_gate;
