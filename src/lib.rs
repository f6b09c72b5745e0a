//! The `metal-guard` command line's library side: the self-test runner and
//! the glue that hands the core's cooldown verdict to the launcher. The
//! binaries (`metal-guard`, `mlx-safe-python`) are thin over it; nothing else
//! in the workspace depends on this crate.

pub mod selftest;
