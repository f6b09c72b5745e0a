//! Linux: Metal's two C entry points, interposed by symbol (`LD_PRELOAD`).
//! The dynamic linker binds the application's (and the driver's own)
//! references to these definitions; the real ones are found with
//! `dlsym(RTLD_NEXT, ...)`, the next definition after this library in the
//! global scope. A driver loaded into a *local* scope (a library opened with
//! `RTLD_LOCAL`, which is how Python's `ctypes.CDLL` and extension-module
//! imports open libraries, together with its dependencies) is not in that
//! scope, so each loaded object is then asked in turn. A miss is not cached:
//! the driver may be loaded later.

use crate::device_entry;
use crate::objc_runtime::Id;
use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

type DeviceEntry = unsafe extern "C-unwind" fn() -> Id;

fn next_definition(cache: &OnceLock<usize>, name: &CStr, ours: usize) -> Option<DeviceEntry> {
    let p = match cache.get() {
        Some(p) => *p,
        None => {
            let found = find_definition(name, ours);
            if found == 0 {
                return None;
            }
            *cache.get_or_init(|| found)
        }
    };
    // SAFETY: the symbol is the driver's definition of the same entry point,
    // `id (void)` in C.
    Some(unsafe { std::mem::transmute::<*mut c_void, DeviceEntry>(p as *mut c_void) })
}

/// The driver's definition of `name` (never `ours`), or 0.
fn find_definition(name: &CStr, ours: usize) -> usize {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; null when no
    // later object in the global scope defines it.
    let next = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize };
    if next != 0 && next != ours {
        return next;
    }
    crate::symbol_lookup::in_loaded_objects(name, ours as *const c_void) as usize
}

static REAL_CREATE: OnceLock<usize> = OnceLock::new();
static REAL_COPY_ALL: OnceLock<usize> = OnceLock::new();

/// `id<MTLDevice> MTLCreateSystemDefaultDevice(void)`, guarded.
///
/// # Safety
/// Called by C code exactly like Metal's function of the same name.
#[no_mangle]
pub unsafe extern "C-unwind" fn MTLCreateSystemDefaultDevice() -> Id {
    let ours = MTLCreateSystemDefaultDevice as *const () as usize;
    let Some(real) = next_definition(&REAL_CREATE, c"MTLCreateSystemDefaultDevice", ours) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the driver's own entry point (see `next_definition`).
    let device = unsafe { real() };
    device_entry::on_device_created(device);
    device
}

/// `NSArray<id<MTLDevice>> *MTLCopyAllDevices(void)`, guarded.
///
/// # Safety
/// Called by C code exactly like Metal's function of the same name.
#[no_mangle]
pub unsafe extern "C-unwind" fn MTLCopyAllDevices() -> Id {
    let ours = MTLCopyAllDevices as *const () as usize;
    let Some(real) = next_definition(&REAL_COPY_ALL, c"MTLCopyAllDevices", ours) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the driver's own entry point (see `next_definition`).
    let devices = unsafe { real() };
    device_entry::on_devices_copied(devices);
    devices
}
