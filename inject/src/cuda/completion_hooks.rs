//! In-flight GPU work: the CUDA counterparts of Metal's commit, completion
//! handler and wait.
//!
//! - `cuGraphLaunch` is MLX's commit: counted as a submission.
//! - `cuLaunchHostFunc` is MLX's completion signal (`Worker::commit` queues a
//!   host function behind each committed graph). We hand the driver our
//!   trampoline instead, with the caller's function and data parked in a
//!   fixed ring of slots; the trampoline calls the caller's function, then
//!   counts the completion. In flight = queued - run. No heap allocation:
//!   when every slot is busy the call goes through unwrapped (counted).
//! - `cuStreamSynchronize` is the wait: counted; work on that stream,
//!   host functions included, has run when it returns.
//!
//! The exit drain waits (bounded) for `in_flight()` to reach 0.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::driver_api::*;
use super::driver_originals::{original, Hooked};
use super::guard_link;

const RING: usize = 4096;
const FREE: u32 = 0;
const TAKEN: u32 = 1;
/// Slots tried from the cursor before going through unwrapped.
const SLOT_TRIES: usize = 16;

struct HostFnSlot {
    state: AtomicU32,
    func: AtomicUsize,
    data: AtomicUsize,
}

static SLOTS: [HostFnSlot; RING] = [const {
    HostFnSlot {
        state: AtomicU32::new(FREE),
        func: AtomicUsize::new(0),
        data: AtomicUsize::new(0),
    }
}; RING];
static CURSOR: AtomicUsize = AtomicUsize::new(0);

static HOST_FNS_QUEUED: AtomicU64 = AtomicU64::new(0);
static HOST_FNS_RUN: AtomicU64 = AtomicU64::new(0);
static HOST_FNS_UNTRACKED: AtomicU64 = AtomicU64::new(0);
static GRAPH_LAUNCHES: AtomicU64 = AtomicU64::new(0);
static STREAM_SYNCS: AtomicU64 = AtomicU64::new(0);

/// Host functions queued through our trampoline that have not run yet.
pub fn in_flight() -> u64 {
    let run = HOST_FNS_RUN.load(Ordering::Acquire);
    HOST_FNS_QUEUED.load(Ordering::Acquire).saturating_sub(run)
}

/// Counters for the exit summary.
pub fn counters() -> guard_link::CompletionCounts {
    guard_link::CompletionCounts {
        graph_launches: GRAPH_LAUNCHES.load(Ordering::Relaxed),
        host_fns: HOST_FNS_QUEUED.load(Ordering::Relaxed),
        host_fns_untracked: HOST_FNS_UNTRACKED.load(Ordering::Relaxed),
        stream_syncs: STREAM_SYNCS.load(Ordering::Relaxed),
    }
}

macro_rules! original_fn {
    ($hooked:expr, $ty:ty) => {{
        let raw = original($hooked, V);
        if raw.is_null() {
            return CUDA_ERROR_NOT_INITIALIZED;
        }
        // SAFETY: the slot holds what the driver returned for this exact
        // function and variant, whose signature is `$ty` (cuda.h).
        unsafe { std::mem::transmute::<*mut c_void, $ty>(raw) }
    }};
}

fn take_slot() -> Option<usize> {
    let start = CURSOR.fetch_add(1, Ordering::Relaxed);
    (0..SLOT_TRIES).map(|i| (start + i) % RING).find(|&i| {
        SLOTS[i]
            .state
            .compare_exchange(FREE, TAKEN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Runs on the driver's callback thread in place of the caller's host
/// function: calls it, then counts the completion.
unsafe extern "C" fn host_fn_trampoline(slot_index: *mut c_void) {
    let index = slot_index as usize % RING;
    let slot = &SLOTS[index];
    let func = slot.func.load(Ordering::Acquire);
    let data = slot.data.load(Ordering::Acquire);
    slot.state.store(FREE, Ordering::Release);
    // The driver's callback thread is a completion thread: never stall it.
    crate::depth::mark_completion_thread();
    if func != 0 {
        // SAFETY: `func` was stored from the caller's non-null CUhostFn when
        // this slot was taken, and the driver runs each queued host function
        // once; calling it with the caller's data is what the driver would
        // have done.
        let func: unsafe extern "C" fn(*mut c_void) = unsafe { std::mem::transmute(func) };
        // SAFETY: see above.
        unsafe { func(data as *mut c_void) };
    }
    HOST_FNS_RUN.fetch_add(1, Ordering::AcqRel);
    guard_link::commit_completed();
}

/// `cuLaunchHostFunc` (and `_ptsz`).
pub unsafe extern "C" fn launch_host_func<const V: usize>(
    stream: CuStream,
    func: CuHostFn,
    user_data: *mut c_void,
) -> CuResult {
    let real = original_fn!(Hooked::LaunchHostFunc, LaunchHostFuncFn);
    let Some(f) = func else {
        // SAFETY: forwarded unchanged; the driver rejects a null function.
        return unsafe { real(stream, func, user_data) };
    };
    let Some(index) = take_slot() else {
        HOST_FNS_UNTRACKED.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        return unsafe { real(stream, func, user_data) };
    };
    let slot = &SLOTS[index];
    slot.func.store(f as usize, Ordering::Release);
    slot.data.store(user_data as usize, Ordering::Release);
    HOST_FNS_QUEUED.fetch_add(1, Ordering::AcqRel);
    guard_link::commit_queued();
    // SAFETY: the trampoline has the CUhostFn signature and finds the
    // caller's function and data in slot `index`, which stays TAKEN until
    // the trampoline has read it.
    let rc = unsafe { real(stream, Some(host_fn_trampoline), index as *mut c_void) };
    if rc != CUDA_SUCCESS {
        // Not queued: release the slot and uncount it.
        slot.state.store(FREE, Ordering::Release);
        HOST_FNS_QUEUED.fetch_sub(1, Ordering::AcqRel);
        guard_link::commit_completed();
    }
    rc
}

/// `cuGraphLaunch` (and `_ptsz`).
pub unsafe extern "C" fn graph_launch<const V: usize>(
    exec: CuGraphExec,
    stream: CuStream,
) -> CuResult {
    let real = original_fn!(Hooked::GraphLaunch, GraphLaunchFn);
    GRAPH_LAUNCHES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: arguments forwarded unchanged to the driver.
    unsafe { real(exec, stream) }
}

/// `cuStreamSynchronize` (and `_ptsz`).
pub unsafe extern "C" fn stream_synchronize<const V: usize>(stream: CuStream) -> CuResult {
    let real = original_fn!(Hooked::StreamSynchronize, StreamSynchronizeFn);
    // SAFETY: argument forwarded unchanged to the driver.
    let rc = unsafe { real(stream) };
    STREAM_SYNCS.fetch_add(1, Ordering::Relaxed);
    rc
}
