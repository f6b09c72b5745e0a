//! Wrappers of the driver's allocation and free entry points. Each asks the
//! guard before allocating (a refusal returns `CUDA_ERROR_OUT_OF_MEMORY`
//! without calling the driver), records what the driver handed out, and
//! charges frees back by address. `V` selects the original (see
//! `proc_address`). Guard logic runs inside `catch_unwind`; if it panics the
//! original call is made as if the guard were absent.

use std::ffi::{c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::driver_api::*;
use super::driver_originals::{self, original, Hooked};
use super::guard_link::{self, Admission};
use super::pointer_table::{MemoryKind, LIVE_ALLOCATIONS};

/// Loads the original for `$hooked`/`V` as `$ty`, or returns
/// `CUDA_ERROR_NOT_INITIALIZED` (unreachable: wrappers are handed out only
/// after their original is stored).
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

/// The guard's verdict on a request, failing open on a panic.
#[inline]
fn admit(kind: MemoryKind, bytes: usize, hook: &'static str) -> Admission {
    match catch_unwind(AssertUnwindSafe(|| {
        if guard_link::device_memory_pending() && guard_link::claim_device_memory_query() {
            guard_link::device_memory_known(driver_originals::device_total_memory());
        }
        guard_link::admit(kind, bytes as u64, hook)
    })) {
        Ok(verdict) => verdict,
        Err(_) => {
            guard_link::hook_panicked("allocation");
            Admission::Allow
        }
    }
}

#[inline]
fn record(kind: MemoryKind, address: u64, bytes: usize) {
    let _ = catch_unwind(|| {
        // Charged only when its free can be charged back: an address the
        // table cannot hold is counted as untracked instead, so the live
        // total never drifts upwards.
        if LIVE_ALLOCATIONS.insert(address, bytes as u64, kind) {
            guard_link::allocated(kind, bytes as u64);
        } else {
            guard_link::untracked_allocation();
        }
    });
}

/// Takes `address` out of the table before the driver frees it (so the
/// driver cannot hand the same address to another thread while our entry
/// still names the old size). Returns what to restore if the free fails.
#[inline]
fn forget(address: u64) -> Option<(MemoryKind, u64)> {
    catch_unwind(|| LIVE_ALLOCATIONS.remove(address).map(|t| (t.kind, t.bytes))).unwrap_or(None)
}

#[inline]
fn settle_free(rc: CuResult, address: u64, taken: Option<(MemoryKind, u64)>) {
    let _ = catch_unwind(|| {
        if rc == CUDA_SUCCESS {
            guard_link::freed(taken);
        } else if let Some((kind, bytes)) = taken {
            let _ = LIVE_ALLOCATIONS.insert(address, bytes, kind);
        }
    });
}

/// `cuMemAlloc_v2`.
pub unsafe extern "C" fn mem_alloc<const V: usize>(
    dptr: *mut CuDevicePtr,
    bytes: usize,
) -> CuResult {
    let real = original_fn!(Hooked::MemAlloc, MemAllocFn);
    if admit(MemoryKind::Device, bytes, "cuMemAlloc_v2") == Admission::Refuse {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(dptr, bytes) };
    if rc == CUDA_SUCCESS && !dptr.is_null() {
        // SAFETY: the driver just wrote the new address into `*dptr`.
        record(MemoryKind::Device, unsafe { *dptr }, bytes);
    }
    rc
}

/// `cuMemAllocAsync` (and `_ptsz`).
pub unsafe extern "C" fn mem_alloc_async<const V: usize>(
    dptr: *mut CuDevicePtr,
    bytes: usize,
    stream: CuStream,
) -> CuResult {
    let real = original_fn!(Hooked::MemAllocAsync, MemAllocAsyncFn);
    if admit(MemoryKind::Device, bytes, "cuMemAllocAsync") == Admission::Refuse {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(dptr, bytes, stream) };
    if rc == CUDA_SUCCESS && !dptr.is_null() {
        // SAFETY: the driver just wrote the new address into `*dptr`.
        record(MemoryKind::Device, unsafe { *dptr }, bytes);
    }
    rc
}

/// `cuMemAllocFromPoolAsync` (and `_ptsz`).
pub unsafe extern "C" fn mem_alloc_from_pool_async<const V: usize>(
    dptr: *mut CuDevicePtr,
    bytes: usize,
    pool: CuMemoryPool,
    stream: CuStream,
) -> CuResult {
    let real = original_fn!(Hooked::MemAllocFromPoolAsync, MemAllocFromPoolAsyncFn);
    if admit(MemoryKind::Device, bytes, "cuMemAllocFromPoolAsync") == Admission::Refuse {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(dptr, bytes, pool, stream) };
    if rc == CUDA_SUCCESS && !dptr.is_null() {
        // SAFETY: the driver just wrote the new address into `*dptr`.
        record(MemoryKind::Device, unsafe { *dptr }, bytes);
    }
    rc
}

/// `cuMemAllocManaged`.
pub unsafe extern "C" fn mem_alloc_managed<const V: usize>(
    dptr: *mut CuDevicePtr,
    bytes: usize,
    flags: c_uint,
) -> CuResult {
    let real = original_fn!(Hooked::MemAllocManaged, MemAllocManagedFn);
    if admit(MemoryKind::Managed, bytes, "cuMemAllocManaged") == Admission::Refuse {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(dptr, bytes, flags) };
    if rc == CUDA_SUCCESS && !dptr.is_null() {
        // SAFETY: the driver just wrote the new address into `*dptr`.
        record(MemoryKind::Managed, unsafe { *dptr }, bytes);
    }
    rc
}

/// `cuMemAllocHost_v2`.
pub unsafe extern "C" fn mem_alloc_host<const V: usize>(
    pp: *mut *mut c_void,
    bytes: usize,
) -> CuResult {
    let real = original_fn!(Hooked::MemAllocHost, MemAllocHostFn);
    if admit(MemoryKind::PinnedHost, bytes, "cuMemAllocHost_v2") == Admission::Refuse {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(pp, bytes) };
    if rc == CUDA_SUCCESS && !pp.is_null() {
        // SAFETY: the driver just wrote the new pointer into `*pp`.
        record(MemoryKind::PinnedHost, unsafe { *pp } as u64, bytes);
    }
    rc
}

/// `cuMemHostAlloc`.
pub unsafe extern "C" fn mem_host_alloc<const V: usize>(
    pp: *mut *mut c_void,
    bytes: usize,
    flags: c_uint,
) -> CuResult {
    let real = original_fn!(Hooked::MemHostAlloc, MemHostAllocFn);
    if admit(MemoryKind::PinnedHost, bytes, "cuMemHostAlloc") == Admission::Refuse {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(pp, bytes, flags) };
    if rc == CUDA_SUCCESS && !pp.is_null() {
        // SAFETY: the driver just wrote the new pointer into `*pp`.
        record(MemoryKind::PinnedHost, unsafe { *pp } as u64, bytes);
    }
    rc
}

/// `cuMemFree_v2`.
pub unsafe extern "C" fn mem_free<const V: usize>(dptr: CuDevicePtr) -> CuResult {
    let real = original_fn!(Hooked::MemFree, MemFreeFn);
    let taken = forget(dptr);
    // SAFETY: argument forwarded unchanged to the driver.
    let rc = unsafe { real(dptr) };
    settle_free(rc, dptr, taken);
    rc
}

/// `cuMemFreeAsync` (and `_ptsz`).
pub unsafe extern "C" fn mem_free_async<const V: usize>(
    dptr: CuDevicePtr,
    stream: CuStream,
) -> CuResult {
    let real = original_fn!(Hooked::MemFreeAsync, MemFreeAsyncFn);
    let taken = forget(dptr);
    // SAFETY: arguments forwarded unchanged to the driver.
    let rc = unsafe { real(dptr, stream) };
    settle_free(rc, dptr, taken);
    rc
}

/// `cuMemFreeHost`.
pub unsafe extern "C" fn mem_free_host<const V: usize>(p: *mut c_void) -> CuResult {
    let real = original_fn!(Hooked::MemFreeHost, MemFreeHostFn);
    let taken = forget(p as u64);
    // SAFETY: argument forwarded unchanged to the driver.
    let rc = unsafe { real(p) };
    settle_free(rc, p as u64, taken);
    rc
}
