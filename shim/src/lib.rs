//! The launcher: resolve the real interpreter, check that the injection will
//! survive the exec chain, set up `DYLD_INSERT_LIBRARIES` / `LD_PRELOAD`, and
//! exec. The gate check is passed in by the caller so this crate does not
//! depend on the core library.

pub mod macho;
pub mod macho_check;
