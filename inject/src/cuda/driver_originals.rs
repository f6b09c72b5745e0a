//! What the driver handed out, in one place the chain (`proc_address`) and
//! the wrappers (`memory_hooks`, `completion_hooks`) both read: the original
//! of each wrapped function per variant, the getters the driver gave us,
//! and the driver calls the guard itself makes through those getters (never
//! through our wrappers). It depends on no other hook module, so the chain
//! and the wrappers form no cycle.

use std::ffi::{c_int, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::driver_api::*;

/// The driver functions we wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hooked {
    MemAlloc = 0,
    MemAllocAsync,
    MemAllocFromPoolAsync,
    MemAllocManaged,
    MemAllocHost,
    MemHostAlloc,
    MemFree,
    MemFreeAsync,
    MemFreeHost,
    LaunchHostFunc,
    GraphLaunch,
    StreamSynchronize,
}

pub const HOOKED_COUNT: usize = 12;

static ORIGINALS: [[AtomicPtr<c_void>; 2]; HOOKED_COUNT] =
    [const { [const { AtomicPtr::new(null_mut()) }; 2] }; HOOKED_COUNT];

/// The driver's original for `hooked`/`variant`; null until handed out.
#[inline(always)]
pub fn original(hooked: Hooked, variant: usize) -> *mut c_void {
    ORIGINALS[hooked as usize][variant].load(Ordering::Acquire)
}

/// The (variant 0, variant 1) original slots of `hooked`.
#[inline]
pub fn originals_of(hooked: Hooked) -> &'static [AtomicPtr<c_void>; 2] {
    &ORIGINALS[hooked as usize]
}

/// Getters the driver gave us: index 0 came from `dlsym`, 1 from the
/// driver's own answer to `cuGetProcAddress("cuGetProcAddress")`.
pub static GETTERS_V2: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(null_mut()) }; 2];
pub static GETTERS_V1: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(null_mut()) }; 2];

/// Records `original` in `slot` (or finds it already there).
pub fn claim(slot: &AtomicPtr<c_void>, original: *mut c_void) -> bool {
    match slot.compare_exchange(null_mut(), original, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(current) => current == original,
    }
}

/// Looks `name` up through an original getter (never our wrappers), for the
/// driver functions the guard itself calls.
fn lookup_driver(name: &CStr) -> *mut c_void {
    let mut found: *mut c_void = null_mut();
    for slot in GETTERS_V2.iter() {
        let raw = slot.load(Ordering::Acquire);
        if raw.is_null() {
            continue;
        }
        // SAFETY: GETTERS_V2 holds only v2 getters the driver returned.
        let getter: GetProcAddressV2Fn = unsafe { std::mem::transmute(raw) };
        let mut status: c_int = 0;
        // SAFETY: valid C string, writable out-pointers on our stack.
        if unsafe { getter(name.as_ptr(), &mut found, 12000, 0, &mut status) } == CUDA_SUCCESS
            && !found.is_null()
        {
            return found;
        }
    }
    for slot in GETTERS_V1.iter() {
        let raw = slot.load(Ordering::Acquire);
        if raw.is_null() {
            continue;
        }
        // SAFETY: GETTERS_V1 holds only v1 getters the driver returned.
        let getter: GetProcAddressV1Fn = unsafe { std::mem::transmute(raw) };
        // SAFETY: valid C string, writable out-pointer on our stack.
        if unsafe { getter(name.as_ptr(), &mut found, 11030, 0) } == CUDA_SUCCESS
            && !found.is_null()
        {
            return found;
        }
    }
    null_mut()
}

/// The total memory of the current context's device (device 0 when there is
/// no current context), asked through the driver's own getter.
pub fn device_total_memory() -> Option<u64> {
    let total_mem = lookup_driver(c"cuDeviceTotalMem");
    if total_mem.is_null() {
        return None;
    }
    // SAFETY: the driver answered "cuDeviceTotalMem" at version 12000 (or
    // 11030), which is cuDeviceTotalMem_v2: (size_t*, CUdevice).
    let total_mem: DeviceTotalMemFn = unsafe { std::mem::transmute(total_mem) };
    let mut device: CuDevice = 0;
    let ctx_get_device = lookup_driver(c"cuCtxGetDevice");
    if !ctx_get_device.is_null() {
        // SAFETY: cuCtxGetDevice(CUdevice*), as declared in cuda.h.
        let ctx_get_device: CtxGetDeviceFn = unsafe { std::mem::transmute(ctx_get_device) };
        // SAFETY: writable out-pointer on our stack.
        if unsafe { ctx_get_device(&mut device) } != CUDA_SUCCESS {
            device = 0;
        }
    }
    let mut bytes: usize = 0;
    // SAFETY: writable out-pointer on our stack, a device ordinal.
    let rc = unsafe { total_mem(&mut bytes, device) };
    (rc == CUDA_SUCCESS && bytes > 0).then_some(bytes as u64)
}
