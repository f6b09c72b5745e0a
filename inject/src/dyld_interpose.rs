//! macOS: dyld interposing of Metal's two C entry points.
//!
//! dyld reads `{replacement, replacee}` pointer pairs from the
//! `__DATA,__interpose` section of every image loaded at launch (an inserted
//! library qualifies) and redirects every other image's binds to `replacee`,
//! including `libmlx.dylib` dlopen'd later, to `replacement`. The
//! interposing image itself is exempt, so reading the replacee pointer from
//! our own table gives the real Metal function.
//!
//! Metal is weak-linked (see `build.rs` and `docs/macos.md`): if it were
//! missing, dyld would bind both replacees to null. The replacements check
//! for that and return null, which is what Metal returns on a Mac without a
//! usable GPU.
//!
//! Both replacements hand what Metal returned to `device_entry`, the same
//! hook installer the Linux `LD_PRELOAD` entry points call, then return it
//! unchanged.

use crate::device_entry;
use crate::objc_runtime::Id;
use std::ffi::c_void;

extern "C" {
    // Resolved against `macos-stubs/Metal.framework/Metal.tbd`; linked weakly
    // by `-weak_framework Metal` in build.rs, never by a `#[link]` attribute.
    fn MTLCreateSystemDefaultDevice() -> Id;
    fn MTLCopyAllDevices() -> Id;
}

/// dyld's tuple layout (`<mach-o/dyld-interposing.h>`); plain pointers,
/// since the target is arm64, not arm64e.
#[repr(C)]
struct InterposeTuple {
    replacement: *const c_void,
    replacee: *const c_void,
}

// SAFETY: the table is written only by dyld while binding, before any thread
// of ours exists, and only read afterwards.
unsafe impl Sync for InterposeTuple {}

const CREATE_SYSTEM_DEFAULT_DEVICE: usize = 0;
const COPY_ALL_DEVICES: usize = 1;

#[used]
#[link_section = "__DATA,__interpose"]
static INTERPOSE: [InterposeTuple; 2] = [
    InterposeTuple {
        replacement: guarded_create_system_default_device as *const c_void,
        replacee: MTLCreateSystemDefaultDevice as *const c_void,
    },
    InterposeTuple {
        replacement: guarded_copy_all_devices as *const c_void,
        replacee: MTLCopyAllDevices as *const c_void,
    },
];

/// Metal's entry points; "C-unwind" so an Objective-C exception raised inside
/// Metal passes through our frame to the caller exactly as it would without us.
type DeviceEntry = unsafe extern "C-unwind" fn() -> Id;

/// The real Metal function of tuple `index`, or `None` when Metal was not loaded.
fn original(index: usize) -> Option<DeviceEntry> {
    // SAFETY: `INTERPOSE` is a static, so the reference is valid; the volatile
    // read stops the compiler from assuming the weak import is non-null.
    let raw = unsafe { std::ptr::read_volatile(&INTERPOSE[index].replacee) };
    if raw.is_null() {
        return None;
    }
    // SAFETY: dyld bound this slot to Metal's export of the same name, whose C
    // signature is `id<MTLDevice> (void)` / `NSArray* (void)`: no arguments,
    // one pointer returned.
    Some(unsafe { std::mem::transmute::<*const c_void, DeviceEntry>(raw) })
}

/// Replaces `MTLCreateSystemDefaultDevice` in every image but ours.
extern "C-unwind" fn guarded_create_system_default_device() -> Id {
    let Some(real) = original(CREATE_SYSTEM_DEFAULT_DEVICE) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the pointer is Metal's own entry point (see `original`).
    let device = unsafe { real() };
    // Catches its own panics: nothing unwinds into the caller from here.
    device_entry::on_device_created(device);
    device
}

/// Replaces `MTLCopyAllDevices` in every image but ours.
extern "C-unwind" fn guarded_copy_all_devices() -> Id {
    let Some(real) = original(COPY_ALL_DEVICES) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the pointer is Metal's own entry point (see `original`).
    let devices = unsafe { real() };
    // Catches its own panics: nothing unwinds into the caller from here.
    device_entry::on_devices_copied(devices);
    devices
}
