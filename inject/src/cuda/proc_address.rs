//! The driver-entry chain: what `dlsym` and `cuGetProcAddress` hand back.
//!
//! The CUDA runtime (linked statically into `libmlx.so`, `libcublasLt`,
//! `libcudnn`, ...) finds every driver function through
//! `dlsym(libcuda, "cuGetProcAddress_v2")`, then asks that function for
//! `"cuGetProcAddress"` itself and uses what it gets for everything else. So
//! we wrap the getter `dlsym` returns, and wrap again the getter the driver
//! hands back; both wrappers replace the pointer of each hooked function with
//! ours, after recording the driver's original.
//!
//! Originals are kept per (function, variant): variant 1 is what a request
//! with `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM` (or a direct `dlsym`
//! of a `_ptsz`/`_ptds` name) returned, variant 0 everything else. Each
//! (function, variant) has its own wrapper, so a wrapper always calls the
//! exact function the caller would have got. If a slot already holds a
//! different original (a second driver?), the caller gets the driver's
//! pointer unwrapped: fail open.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use super::completion_hooks;
use super::driver_api::*;
use super::driver_originals::{claim, originals_of, Hooked, GETTERS_V1, GETTERS_V2, HOOKED_COUNT};
use super::guard_link::{self, ChainPath};
use super::memory_hooks;

struct HookSpec {
    hooked: Hooked,
    /// The name `cuGetProcAddress` is asked with (no version suffix).
    getter_name: &'static [u8],
    /// The lowest `cudaVersion` whose answer has the signature we wrap.
    min_version: c_int,
    /// Exported names a direct `dlsym` may ask for: variant 0, variant 1.
    exported: [&'static [u8]; 2],
}

const SPECS: [HookSpec; HOOKED_COUNT] = [
    spec(
        Hooked::MemAlloc,
        b"cuMemAlloc",
        V2_MEMORY_API_SINCE,
        [b"cuMemAlloc_v2", b""],
    ),
    spec(
        Hooked::MemAllocAsync,
        b"cuMemAllocAsync",
        0,
        [b"cuMemAllocAsync", b"cuMemAllocAsync_ptsz"],
    ),
    spec(
        Hooked::MemAllocFromPoolAsync,
        b"cuMemAllocFromPoolAsync",
        0,
        [b"cuMemAllocFromPoolAsync", b"cuMemAllocFromPoolAsync_ptsz"],
    ),
    spec(
        Hooked::MemAllocManaged,
        b"cuMemAllocManaged",
        0,
        [b"cuMemAllocManaged", b""],
    ),
    spec(
        Hooked::MemAllocHost,
        b"cuMemAllocHost",
        V2_MEMORY_API_SINCE,
        [b"cuMemAllocHost_v2", b""],
    ),
    spec(
        Hooked::MemHostAlloc,
        b"cuMemHostAlloc",
        0,
        [b"cuMemHostAlloc", b""],
    ),
    spec(
        Hooked::MemFree,
        b"cuMemFree",
        V2_MEMORY_API_SINCE,
        [b"cuMemFree_v2", b""],
    ),
    spec(
        Hooked::MemFreeAsync,
        b"cuMemFreeAsync",
        0,
        [b"cuMemFreeAsync", b"cuMemFreeAsync_ptsz"],
    ),
    spec(
        Hooked::MemFreeHost,
        b"cuMemFreeHost",
        0,
        [b"cuMemFreeHost", b""],
    ),
    spec(
        Hooked::LaunchHostFunc,
        b"cuLaunchHostFunc",
        0,
        [b"cuLaunchHostFunc", b"cuLaunchHostFunc_ptsz"],
    ),
    spec(
        Hooked::GraphLaunch,
        b"cuGraphLaunch",
        0,
        [b"cuGraphLaunch", b"cuGraphLaunch_ptsz"],
    ),
    spec(
        Hooked::StreamSynchronize,
        b"cuStreamSynchronize",
        0,
        [b"cuStreamSynchronize", b"cuStreamSynchronize_ptsz"],
    ),
];

const fn spec(
    hooked: Hooked,
    getter_name: &'static [u8],
    min_version: c_int,
    exported: [&'static [u8]; 2],
) -> HookSpec {
    HookSpec {
        hooked,
        getter_name,
        min_version,
        exported,
    }
}

static EXIT_REGISTERED: AtomicBool = AtomicBool::new(false);
static MISMATCH_REPORTED: AtomicBool = AtomicBool::new(false);

fn report_mismatch(what: &str) {
    if !MISMATCH_REPORTED.swap(true, Ordering::AcqRel) {
        guard_link::failed_open(&format!(
            "{what}: the driver handed out a second, different function for a wrapped entry; \
             that one is left unwrapped"
        ));
    }
}

/// A wrapper was handed out through `path`: report it and, the first time,
/// register the exit drain. Registered now (not at load) so it runs before
/// the static destructors of the libraries already loaded, MLX's among them.
fn chain_active(path: ChainPath) {
    guard_link::chain_active(path);
    if !EXIT_REGISTERED.swap(true, Ordering::AcqRel)
        && !crate::exit_drain::register_backend(&super::EXIT_BACKEND)
    {
        guard_link::failed_open("atexit refused the exit-drain handler; no drain at exit");
    }
}

fn hook_address(hooked: Hooked, variant: usize) -> *mut c_void {
    use completion_hooks as c;
    use memory_hooks as m;
    macro_rules! pick {
        ($f:ident, $m:ident) => {
            if variant == 0 {
                $m::$f::<0> as *mut c_void
            } else {
                $m::$f::<1> as *mut c_void
            }
        };
    }
    match hooked {
        Hooked::MemAlloc => pick!(mem_alloc, m),
        Hooked::MemAllocAsync => pick!(mem_alloc_async, m),
        Hooked::MemAllocFromPoolAsync => pick!(mem_alloc_from_pool_async, m),
        Hooked::MemAllocManaged => pick!(mem_alloc_managed, m),
        Hooked::MemAllocHost => pick!(mem_alloc_host, m),
        Hooked::MemHostAlloc => pick!(mem_host_alloc, m),
        Hooked::MemFree => pick!(mem_free, m),
        Hooked::MemFreeAsync => pick!(mem_free_async, m),
        Hooked::MemFreeHost => pick!(mem_free_host, m),
        Hooked::LaunchHostFunc => pick!(launch_host_func, c),
        Hooked::GraphLaunch => pick!(graph_launch, c),
        Hooked::StreamSynchronize => pick!(stream_synchronize, c),
    }
}

/// The wrapper to hand out in place of `original` for `hooked`, preferring
/// `variant`; None leaves the original unwrapped.
fn wrap(hooked: Hooked, variant: usize, original: *mut c_void) -> Option<*mut c_void> {
    let slots = originals_of(hooked);
    for v in [variant, 1 - variant] {
        if claim(&slots[v], original) {
            return Some(hook_address(hooked, v));
        }
    }
    report_mismatch("cuGetProcAddress");
    None
}

/// A getter answered `name` with `found`: what the caller gets instead.
fn substitute(
    name: &[u8],
    found: *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> Option<*mut c_void> {
    if !guard_link::enabled() {
        return None;
    }
    if name == b"cuGetProcAddress" {
        return if cuda_version >= GET_PROC_ADDRESS_V2_SINCE {
            if claim(&GETTERS_V2[1], found) {
                chain_active(ChainPath::DriverGetter);
                Some(getter_v2::<1> as *mut c_void)
            } else {
                report_mismatch("cuGetProcAddress(\"cuGetProcAddress\")");
                None
            }
        } else if claim(&GETTERS_V1[1], found) {
            chain_active(ChainPath::DriverGetter);
            Some(getter_v1::<1> as *mut c_void)
        } else {
            report_mismatch("cuGetProcAddress(\"cuGetProcAddress\")");
            None
        };
    }
    let spec = SPECS.iter().find(|s| s.getter_name == name)?;
    if cuda_version < spec.min_version {
        return None;
    }
    let variant = usize::from(flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM != 0);
    wrap(spec.hooked, variant, found)
}

/// `dlsym` resolved `name` to `found`: the wrapper to return instead, if any.
pub fn substitute_exported(name: &[u8], found: *mut c_void) -> Option<*mut c_void> {
    if !guard_link::enabled() {
        return None;
    }
    match name {
        b"cuGetProcAddress_v2" => {
            if claim(&GETTERS_V2[0], found) {
                chain_active(ChainPath::DlsymGetter);
                Some(getter_v2::<0> as *mut c_void)
            } else {
                report_mismatch("dlsym(cuGetProcAddress_v2)");
                None
            }
        }
        b"cuGetProcAddress" => {
            if claim(&GETTERS_V1[0], found) {
                chain_active(ChainPath::DlsymGetter);
                Some(getter_v1::<0> as *mut c_void)
            } else {
                report_mismatch("dlsym(cuGetProcAddress)");
                None
            }
        }
        _ => {
            let (spec, variant) = SPECS.iter().find_map(|s| {
                s.exported
                    .iter()
                    .position(|e| !e.is_empty() && *e == name)
                    .map(|v| (s, v))
            })?;
            let wrapper = wrap(spec.hooked, variant, found)?;
            chain_active(ChainPath::DlsymFunction);
            Some(wrapper)
        }
    }
}

/// Whether `name` is one `substitute_exported` may wrap (cheap filter for
/// the `dlsym` hook, run before anything else there).
pub fn is_wrapped_export(name: &[u8]) -> bool {
    name.starts_with(b"cu")
        && (name == b"cuGetProcAddress_v2"
            || name == b"cuGetProcAddress"
            || SPECS
                .iter()
                .any(|s| s.exported.iter().any(|e| !e.is_empty() && *e == name)))
}

/// After a successful getter call: swap in our wrapper where one applies.
///
/// # Safety
/// `symbol` is null or a NUL-terminated string and `pfn` is null or points
/// to a writable pointer slot, as `cuGetProcAddress` itself requires.
unsafe fn after_getter(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) {
    if symbol.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: checked non-null; the caller passed a valid slot the driver
    // just wrote to.
    let found = unsafe { *pfn };
    if found.is_null() {
        return;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the driver accepted `symbol` as a C string.
        let name = unsafe { CStr::from_ptr(symbol) }.to_bytes();
        substitute(name, found, cuda_version, flags)
    }));
    match outcome {
        // SAFETY: `pfn` is the caller's writable slot (see above).
        Ok(Some(wrapper)) => unsafe { *pfn = wrapper },
        Ok(None) => {}
        Err(_) => guard_link::hook_panicked("cuGetProcAddress wrapper"),
    }
}

/// Our `cuGetProcAddress_v2`; `S` picks the original (0: from dlsym, 1: from
/// the driver).
unsafe extern "C" fn getter_v2<const S: usize>(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    symbol_status: *mut c_int,
) -> CuResult {
    let raw = GETTERS_V2[S].load(Ordering::Acquire);
    if raw.is_null() {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: only a pointer the driver returned for a v2 getter is stored
    // in GETTERS_V2, before this wrapper was handed out.
    let real: GetProcAddressV2Fn = unsafe { std::mem::transmute(raw) };
    // SAFETY: arguments forwarded unchanged to the function the caller asked for.
    let rc = unsafe { real(symbol, pfn, cuda_version, flags, symbol_status) };
    if rc == CUDA_SUCCESS {
        // SAFETY: same arguments the driver just accepted.
        unsafe { after_getter(symbol, pfn, cuda_version, flags) };
    }
    rc
}

/// Our four-argument `cuGetProcAddress` (CUDA 11.3 to 11.8 callers).
unsafe extern "C" fn getter_v1<const S: usize>(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CuResult {
    let raw = GETTERS_V1[S].load(Ordering::Acquire);
    if raw.is_null() {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: only a pointer the driver returned for a v1 getter is stored
    // in GETTERS_V1, before this wrapper was handed out.
    let real: GetProcAddressV1Fn = unsafe { std::mem::transmute(raw) };
    // SAFETY: arguments forwarded unchanged.
    let rc = unsafe { real(symbol, pfn, cuda_version, flags) };
    if rc == CUDA_SUCCESS {
        // SAFETY: same arguments the driver just accepted.
        unsafe { after_getter(symbol, pfn, cuda_version, flags) };
    }
    rc
}
