//! Linux: Metal's two C entry points, interposed by symbol (`LD_PRELOAD`).
//! The dynamic linker binds the application's (and the driver's own)
//! references to these definitions; the real ones are found with
//! `dlsym(RTLD_NEXT, ...)`, the next definition after this library.

use crate::device_entry;
use crate::objc_runtime::Id;
use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

type DeviceEntry = unsafe extern "C-unwind" fn() -> Id;

fn next_definition(cache: &OnceLock<usize>, name: &CStr) -> Option<DeviceEntry> {
    let p = *cache.get_or_init(|| {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; null when
        // no later object defines it (no Metal driver loaded).
        unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
    });
    if p == 0 {
        return None;
    }
    // SAFETY: the symbol is the driver's definition of the same entry point,
    // `id (void)` in C.
    Some(unsafe { std::mem::transmute::<*mut c_void, DeviceEntry>(p as *mut c_void) })
}

static REAL_CREATE: OnceLock<usize> = OnceLock::new();
static REAL_COPY_ALL: OnceLock<usize> = OnceLock::new();

/// `id<MTLDevice> MTLCreateSystemDefaultDevice(void)`, guarded.
///
/// # Safety
/// Called by C code exactly like Metal's function of the same name.
#[no_mangle]
pub unsafe extern "C-unwind" fn MTLCreateSystemDefaultDevice() -> Id {
    let Some(real) = next_definition(&REAL_CREATE, c"MTLCreateSystemDefaultDevice") else {
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
    let Some(real) = next_definition(&REAL_COPY_ALL, c"MTLCopyAllDevices") else {
        return std::ptr::null_mut();
    };
    // SAFETY: the driver's own entry point (see `next_definition`).
    let devices = unsafe { real() };
    device_entry::on_devices_copied(devices);
    devices
}
