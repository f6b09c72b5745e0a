//! The hooks: one module per receiver (device, heap, queue, command buffer,
//! residency set, buffer). Each hook is thin: find the original IMP for the
//! receiver's class, run the policy inside `policy()` (which catches panics
//! and reports them), call the original, return what it returned.
//!
//! Hooks are `extern "C-unwind"`: an Objective-C or C++ exception thrown by
//! the driver passes through our frame to the caller exactly as it would
//! without us.

pub mod buffer;
pub mod command_buffer;
pub mod device;
pub mod heap;
pub mod queue;
pub mod residency_set;

use crate::breadcrumb_sink::Event;
use crate::guard::Guard;
use crate::hook_table::{install, HookSlot, InstallOutcome};
use crate::objc_runtime::{Class, Id, Imp, ObjcRuntime, Sel};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f` (the guard's policy for one call) with panics caught. `None`:
/// it panicked (or fault injection made it), the fault is on record, and
/// the hook must behave as if it were not there.
#[inline]
pub fn policy<T>(guard: &Guard, hook: &'static str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(|| {
        guard.maybe_inject_fault(hook);
        f()
    })) {
        Ok(v) => Some(v),
        Err(_) => {
            // Reporting must not unwind out of the hook either.
            let _ = catch_unwind(AssertUnwindSafe(|| guard.on_hook_fault(hook)));
            None
        }
    }
}

/// Hooks `slot` on `cls` and posts a breadcrumb when a class is newly hooked.
pub fn install_on(
    guard: &Guard,
    rt: &ObjcRuntime,
    cls: Class,
    role: &'static str,
    slots: &[(&HookSlot, Imp)],
) {
    let mut installed = 0u64;
    let mut covered = 0u64;
    for (slot, hook) in slots {
        match install(rt, cls, slot, *hook) {
            InstallOutcome::Installed => installed += 1,
            InstallOutcome::CoveredBySuperclass => covered += 1,
            InstallOutcome::AlreadyInstalled | InstallOutcome::NotImplemented => {}
            InstallOutcome::TableFull => guard
                .sink
                .post(Event::new("GUARD_HOOK_TABLE_FULL", role).with_class(&rt.class_name(cls))),
        }
    }
    if installed > 0 || covered > 0 {
        guard.sink.post(
            Event::new("GUARD_HOOKED", role)
                .with_class(&rt.class_name(cls))
                .with("selectors", installed)
                .with("inherited", covered),
        );
    }
}

/// `[obj retain]` through its class's IMP.
pub fn object_retain(rt: &ObjcRuntime, obj: Id) {
    send_void(rt, obj, c"retain");
}

/// `[obj release]` through its class's IMP.
pub fn object_release(rt: &ObjcRuntime, obj: Id) {
    send_void(rt, obj, c"release");
}

fn send_void(rt: &ObjcRuntime, obj: Id, selector: &std::ffi::CStr) {
    if obj.is_null() {
        return;
    }
    let cls = rt.class_of(obj);
    let sel = rt.sel(selector);
    if !rt.responds(cls, sel) {
        return;
    }
    let imp = rt.imp(cls, sel);
    // SAFETY: `imp` is what `obj`'s class resolves for `retain`/`release`,
    // both callable as `(id, SEL)`; the result of `retain` (the object
    // itself) is ignored, which the calling convention allows.
    unsafe {
        let f: unsafe extern "C-unwind" fn(Id, Sel) -> Id = std::mem::transmute::<Imp, _>(imp);
        f(obj, sel);
    }
}

/// `[obj <selector>]` for an unsigned-integer getter (`length`,
/// `recommendedMaxWorkingSetSize`, `count`); `None` if it does not respond.
pub fn send_u64(rt: &ObjcRuntime, obj: Id, selector: &std::ffi::CStr) -> Option<u64> {
    send_u64_sel(rt, obj, rt.sel(selector))
}

/// [`send_u64`] with an interned selector.
#[inline]
pub fn send_u64_sel(rt: &ObjcRuntime, obj: Id, sel: Sel) -> Option<u64> {
    if obj.is_null() {
        return None;
    }
    let cls = rt.class_of(obj);
    if !rt.responds(cls, sel) {
        return None;
    }
    let imp = rt.imp(cls, sel);
    // SAFETY: the getters named by callers return NSUInteger/uint64_t and
    // take no arguments: `u64 (id, SEL)` on LP64.
    Some(unsafe {
        let f: unsafe extern "C-unwind" fn(Id, Sel) -> u64 = std::mem::transmute::<Imp, _>(imp);
        f(obj, sel)
    })
}

/// `[array objectAtIndex:i]`.
pub fn object_at_index(rt: &ObjcRuntime, array: Id, i: u64) -> Id {
    let cls = rt.class_of(array);
    let sel = rt.sel(c"objectAtIndex:");
    if !rt.responds(cls, sel) {
        return std::ptr::null_mut();
    }
    let imp = rt.imp(cls, sel);
    // SAFETY: `objectAtIndex:` is `id (id, SEL, NSUInteger)`; callers keep
    // `i < count`.
    unsafe {
        let f: unsafe extern "C-unwind" fn(Id, Sel, u64) -> Id = std::mem::transmute::<Imp, _>(imp);
        f(array, sel, i)
    }
}

/// The runtime and the original IMP of `slot` for `this`'s class. `None`
/// only if a hook runs on a class we never recorded, which `install` rules
/// out; the hook then returns nil / does nothing rather than guess.
#[inline]
pub fn original(slot: &HookSlot, this: Id) -> Option<(&'static ObjcRuntime, Imp)> {
    let rt = ObjcRuntime::resolved()?;
    Some((rt, slot.original_for(rt, this)?))
}

/// A selector interned once and cached (hot paths avoid `sel_registerName`).
pub struct CachedSel {
    name: &'static std::ffi::CStr,
    sel: std::sync::atomic::AtomicPtr<std::ffi::c_void>,
}

impl CachedSel {
    pub const fn new(name: &'static std::ffi::CStr) -> Self {
        CachedSel {
            name,
            sel: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    #[inline]
    pub fn get(&self, rt: &ObjcRuntime) -> Sel {
        use std::sync::atomic::Ordering::{Acquire, Release};
        let s = self.sel.load(Acquire);
        if !s.is_null() {
            return s as Sel;
        }
        let s = rt.sel(self.name);
        self.sel.store(s as *mut _, Release);
        s
    }
}
