//! Finding a symbol in whatever the process has loaded.
//!
//! `dlsym(RTLD_DEFAULT, ...)` searches the global scope only. On Linux a
//! library opened with `RTLD_LOCAL` (Python's `ctypes.CDLL` and its
//! extension-module imports do that) brings its dependencies (the Metal
//! driver, the Objective-C and blocks runtimes) in a local scope that
//! `RTLD_DEFAULT` does not see. So after the global scope, each loaded object
//! is asked in turn through an `RTLD_NOLOAD` handle, which searches that
//! object and its dependencies.

#[cfg(target_os = "linux")]
use std::ffi::CString;
use std::ffi::{c_void, CStr};

/// The first definition of `name` in the global scope, else in any loaded
/// object; `skip` (our own definition, for interposed functions) never counts.
/// Null when nothing loaded defines it.
pub fn any_loaded_symbol(name: &CStr, skip: *const c_void) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no
    // preconditions; null means "not in the global scope".
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if !p.is_null() && p.cast_const() != skip {
        return p;
    }
    in_loaded_objects(name, skip)
}

/// `name` in each loaded object (and its dependencies), in load order.
#[cfg(target_os = "linux")]
pub fn in_loaded_objects(name: &CStr, skip: *const c_void) -> *mut c_void {
    for object in loaded_object_names() {
        // SAFETY: RTLD_NOLOAD only returns a handle to an object that is
        // already loaded (adding a reference that is dropped below); the
        // name is NUL-terminated.
        let handle = unsafe { libc::dlopen(object.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            continue;
        }
        // SAFETY: a valid handle from dlopen and a NUL-terminated name.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        // SAFETY: drops the reference RTLD_NOLOAD added; the object stays loaded.
        unsafe { libc::dlclose(handle) };
        if !p.is_null() && p.cast_const() != skip {
            return p;
        }
    }
    std::ptr::null_mut()
}

/// dyld's `RTLD_DEFAULT` already covers every image opened without
/// `RTLD_LOCAL`, which is how Python opens extension modules on macOS.
#[cfg(not(target_os = "linux"))]
pub fn in_loaded_objects(_name: &CStr, _skip: *const c_void) -> *mut c_void {
    std::ptr::null_mut()
}

/// Paths of the loaded shared objects, in load order (the main program,
/// whose name is empty, is left out).
#[cfg(target_os = "linux")]
fn loaded_object_names() -> Vec<CString> {
    unsafe extern "C" fn collect(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` for the duration of
        // the call, and `data` is the Vec handed to it below.
        unsafe {
            let names = &mut *(data as *mut Vec<CString>);
            let name = (*info).dlpi_name;
            if !name.is_null() {
                let name = CStr::from_ptr(name);
                if !name.is_empty() {
                    names.push(name.to_owned());
                }
            }
        }
        0
    }
    let mut names: Vec<CString> = Vec::new();
    // SAFETY: the callback only reads `info` and appends to `names`, which
    // outlives the call; no loader function is called inside it.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), (&mut names as *mut Vec<CString>).cast());
    }
    names
}
