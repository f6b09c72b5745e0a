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
use crate::hook_table::{install, HookSlot, InstallOutcome, SlotTable};
use crate::objc_runtime::{Class, Id, Imp, ObjcRuntime};
use crate::typed_imp::TypedImp;
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
    slots: &[(&SlotTable, Imp)],
) {
    let mut installed = 0u64;
    let mut covered = 0u64;
    for (slot, hook) in slots {
        match install(rt, cls, slot, *hook) {
            InstallOutcome::Installed => installed += 1,
            InstallOutcome::CoveredBySuperclass => covered += 1,
            InstallOutcome::AlreadyInstalled | InstallOutcome::NotImplemented => {}
            InstallOutcome::TableFull => guard
                .post(Event::new("GUARD_HOOK_TABLE_FULL", role).with_class(&rt.class_name(cls))),
            InstallOutcome::EncodingMismatch => guard.post(
                Event::new("GUARD_HOOK_SKIPPED", role)
                    .with_class(&rt.class_name(cls))
                    .with_text("selector", slot.selector.to_str().unwrap_or("?"))
                    .with_text("reason", "type_encoding_mismatch")
                    .with_text("expected", slot.shape),
            ),
        }
    }
    if installed > 0 || covered > 0 {
        guard.post(
            Event::new("GUARD_HOOKED", role)
                .with_class(&rt.class_name(cls))
                .with("selectors", installed)
                .with("inherited", covered),
        );
    }
}

/// The runtime and the original IMP of `slot` for `this`'s class. `None`
/// only if a hook runs on a class we never recorded, which `install` rules
/// out; the hook then returns nil / does nothing rather than guess.
#[inline]
pub fn original<F: Copy>(
    slot: &HookSlot<F>,
    this: Id,
) -> Option<(&'static ObjcRuntime, TypedImp<F>)> {
    let rt = ObjcRuntime::resolved()?;
    Some((rt, slot.original_for(rt, this)?))
}
