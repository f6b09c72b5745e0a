//! Buffer hooks: `dealloc` of the concrete buffer classes, so the ledger
//! sees frees and the cadence detector sees unload bursts without hooking
//! `release` (far hotter, and reached through `objc_release` on Apple).

use super::{install_on, original, policy};
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard};
use crate::hook_table::HookSlot;
use crate::objc_messages::{object_length, CachedSel};
use crate::objc_runtime::{Id, ObjcRuntime, Sel};
use crate::typed_imp::Method0;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering::*};

pub static DEALLOC: HookSlot<Method0<()>> = HookSlot::new(c"dealloc", "v@:");
static LENGTH: CachedSel = CachedSel::new(c"length");

/// Buffer classes already handled (hooked, covered or not hookable), so a
/// repeat sighting costs no install attempt. A free's `length` goes through
/// `objc_messages`' per-class IMP cache.
const SEEN: usize = 8;
static SEEN_CLASSES: [AtomicPtr<c_void>; SEEN] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SEEN];

/// After a driver allocation returned `buffer`: the ledger counts it and the
/// buffer's class is hooked (for frees). Nothing happens for nil.
#[inline]
pub fn record_allocation(guard: &Guard, selector: &'static str, bytes: u64, buffer: Id) {
    if buffer.is_null() {
        return;
    }
    super::policy(guard, selector, || {
        guard.after_allocation(bytes);
        ensure_hooked(guard, buffer);
    });
}

/// Hooks `dealloc` on `buffer`'s class the first time that class is seen.
#[inline]
pub fn ensure_hooked(guard: &Guard, buffer: Id) {
    let Some(rt) = ObjcRuntime::resolved() else {
        return;
    };
    let cls = rt.class_of(buffer);
    for slot in &SEEN_CLASSES {
        let seen = slot.load(Acquire);
        if seen == cls {
            return;
        }
        if seen.is_null() {
            break;
        }
    }
    first_sighting(guard, rt, cls);
}

static SIGHTING_LOCK: crate::fork_safe_lock::ForkSafeLock =
    crate::fork_safe_lock::ForkSafeLock::new();

/// In a forked child: a thread that was hooking a buffer class stayed behind.
pub fn reset_after_fork() {
    SIGHTING_LOCK.reset_after_fork();
}

#[cold]
fn first_sighting(guard: &Guard, rt: &ObjcRuntime, cls: *mut c_void) {
    // One writer at a time, so each class takes one slot.
    let _lock = SIGHTING_LOCK.lock();
    if SEEN_CLASSES.iter().any(|s| s.load(Acquire) == cls) {
        return;
    }
    // Only a length-bearing class is worth hooking.
    if rt.responds(cls, LENGTH.get(rt)) {
        install_on(
            guard,
            rt,
            cls,
            "buffer",
            &[DEALLOC.with_hook(buffer_dealloc)],
        );
    }
    for slot in SEEN_CLASSES.iter() {
        let seen = slot.load(Acquire);
        if seen == cls {
            return;
        }
        if seen.is_null() {
            slot.store(cls, Release);
            return;
        }
    }
}

unsafe extern "C-unwind" fn buffer_dealloc(this: Id, cmd: Sel) {
    let Some((rt, orig)) = original(&DEALLOC, this) else {
        return;
    };
    if let Some(guard) = guard() {
        let depth = DepthGuard::enter(HookFamily::Free);
        if depth.outermost() {
            policy(guard, "dealloc", || {
                guard.on_buffer_freed(object_length(rt, this).unwrap_or(0));
            });
        }
    }
    // SAFETY: the original `dealloc` (typed by its hook slot) on the caller's receiver, still alive until it runs.
    unsafe { orig.call(this, cmd) }
}
