//! Our `dlsym`: the entry of the whole CUDA chain.
//!
//! It is a naked trampoline so that every lookup we do not wrap reaches
//! glibc's `dlsym` by a tail jump, with the caller's own return address on
//! the stack: glibc resolves `RTLD_NEXT` (and the caller's local scope for
//! `RTLD_DEFAULT`) from that address, so a plain wrapper would silently
//! change what `dlsym(RTLD_NEXT, ...)` means for every other library in the
//! process. Only lookups of the driver getters (and of the driver's memory
//! and stream functions by name) return a wrapper.
//!
//! glibc's real `dlsym` comes from `dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34")`
//! (libc.so.6 since glibc 2.34), falling back to `"GLIBC_2.2.5"` (libdl on
//! older glibc).

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::guard_link;
use super::proc_address;

type DlsymFn = unsafe extern "C" fn(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;

/// glibc's `dlsym`; the trampoline jumps here. Null only if neither version
/// resolves (then `dlsym` answers null, "not found").
static REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

fn real_dlsym() -> *mut c_void {
    let known = REAL_DLSYM.load(Ordering::Acquire);
    if !known.is_null() {
        return known;
    }
    let mut found = null_mut();
    for version in [c"GLIBC_2.34", c"GLIBC_2.2.5"] {
        // SAFETY: dlvsym with RTLD_NEXT and two valid C strings; it does not
        // go through our `dlsym` and allocates nothing.
        found = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), version.as_ptr()) };
        if !found.is_null() {
            break;
        }
    }
    REAL_DLSYM.store(found, Ordering::Release);
    found
}

/// The exported `dlsym`. Saves the arguments, asks `route_dlsym` whether
/// this lookup is one we wrap; if it returns non-null that is the answer,
/// otherwise the arguments are restored and control jumps to glibc's dlsym
/// as if the caller had called it directly.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {route}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jnz 2f",
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "jz 2f",
        "jmp rax",
        "2:",
        "ret",
        route = sym route_dlsym,
        real = sym REAL_DLSYM,
    )
}

/// Non-null: the wrapper to return. Null: let glibc answer. Always leaves
/// `REAL_DLSYM` resolved. Allocates nothing unless `symbol` is one of the
/// driver names we wrap (so a malloc that calls `dlsym` during its own
/// start-up never re-enters itself through us).
extern "C" fn route_dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    let real = real_dlsym();
    if real.is_null() || symbol.is_null() || handle == libc::RTLD_NEXT {
        return null_mut();
    }
    // SAFETY: dlsym's contract: `symbol` is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(symbol) }.to_bytes();
    if !proc_address::is_wrapped_export(name) {
        return null_mut();
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: REAL_DLSYM holds glibc's dlsym.
        let real: DlsymFn = unsafe { std::mem::transmute(real) };
        // SAFETY: the caller's own arguments.
        let mut found = unsafe { real(handle, symbol) };
        if found.is_null() && handle == libc::RTLD_DEFAULT {
            // RTLD_DEFAULT from the caller may see libcuda through its own
            // local scope (a dependency of an RTLD_LOCAL library), which a
            // lookup from here does not: ask the loaded driver directly.
            found = from_loaded_driver(real, symbol);
        }
        if found.is_null() {
            return null_mut();
        }
        proc_address::substitute_exported(name, found).unwrap_or(null_mut())
    }))
    .unwrap_or_else(|_| {
        guard_link::hook_panicked("dlsym");
        null_mut()
    })
}

fn from_loaded_driver(real: DlsymFn, symbol: *const c_char) -> *mut c_void {
    // SAFETY: RTLD_NOLOAD only returns an already loaded library (taking a
    // reference we drop below); valid C string.
    let handle =
        unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return null_mut();
    }
    // SAFETY: a live handle and the caller's C string.
    let found = unsafe { real(handle, symbol) };
    // SAFETY: drops the reference RTLD_NOLOAD took; the library stays loaded
    // by whoever loaded it first.
    unsafe { libc::dlclose(handle) };
    found
}
