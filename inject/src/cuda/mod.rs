//! The CUDA backend (Linux, x86_64): the same guard inside MLX's CUDA build.
//!
//! `libmlx.so` links the CUDA runtime statically, so `cudaMalloc*` cannot be
//! interposed. The runtime reaches the driver through
//! `dlsym(libcuda, "cuGetProcAddress_v2")` and then through the
//! `cuGetProcAddress` that getter hands back; we interpose `dlsym`, wrap both
//! getters, and hand out wrappers of the driver's allocation, free, host
//! function, graph launch and stream synchronization entry points (see
//! `proc_address` for the chain, `memory_hooks` and `completion_hooks` for
//! the wrappers). The wrappers feed the guard through `guard_link`, the only
//! module that knows the policy; nothing CUDA-specific leaves this folder.
//!
//! Nothing runs at load: the chain activates when the process first looks
//! the driver up, and registers the exit drain then.

mod completion_hooks;
mod dlsym_entry;
mod driver_api;
mod driver_originals;
mod guard_link;
mod memory_hooks;
mod pointer_table;
mod proc_address;

/// The CUDA backend as the one exit drain (`crate::exit_drain`) sees it:
/// its host functions in flight count as GPU work, and its counters follow
/// the guard's summary as `CUDA_SUMMARY`.
pub(crate) static EXIT_BACKEND: crate::exit_drain::Backend = crate::exit_drain::Backend {
    name: "cuda",
    in_flight: completion_hooks::in_flight,
    summary: |g, drain| guard_link::write_cuda_summary(g, drain, completion_hooks::counters()),
};
