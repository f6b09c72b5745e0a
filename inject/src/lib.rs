//! `libmetal_guard_inject`: loaded into an MLX process with
//! `DYLD_INSERT_LIBRARIES` (macOS) or `LD_PRELOAD` (Linux). Hooks only post
//! events; the policy lives in `metal_guard::engine`.

#[cfg(target_os = "macos")]
mod dyld_interpose;
