//! Buffer hooks: `dealloc` of the concrete buffer classes, so the ledger
//! sees frees and the cadence detector sees unload bursts without hooking
//! `release` (far hotter, and reached through `objc_release` on Apple).

use super::{install_on, original, policy};
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard};
use crate::hook_table::HookSlot;
use crate::objc_messages::{send_u64_sel, CachedSel};
use crate::objc_runtime::{Id, ObjcRuntime, Sel};
use crate::typed_imp::Method0;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering::*};

pub static DEALLOC: HookSlot<Method0<()>> = HookSlot::new(c"dealloc", "v@:");
static LENGTH: CachedSel = CachedSel::new(c"length");

/// Buffer classes already handled (hooked, covered or not hookable), each
/// with its `length` IMP, so a free costs no method lookup.
const SEEN: usize = 8;
static SEEN_CLASSES: [AtomicPtr<c_void>; SEEN] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SEEN];
static LENGTH_IMPS: [AtomicPtr<c_void>; SEEN] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SEEN];

type Length = unsafe extern "C-unwind" fn(Id, Sel) -> u64;

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
    // One writer at a time: a slot's IMP and class are published as a pair.
    let _lock = SIGHTING_LOCK.lock();
    if SEEN_CLASSES.iter().any(|s| s.load(Acquire) == cls) {
        return;
    }
    let length = LENGTH.get(rt);
    let length_imp = if rt.responds(cls, length) {
        rt.imp(cls, length)
    } else {
        std::ptr::null()
    };
    // Only a length-bearing class is worth hooking.
    if !length_imp.is_null() {
        install_on(
            guard,
            rt,
            cls,
            "buffer",
            &[DEALLOC.with_hook(buffer_dealloc)],
        );
    }
    for (i, slot) in SEEN_CLASSES.iter().enumerate() {
        let seen = slot.load(Acquire);
        if seen == cls {
            return;
        }
        if seen.is_null() {
            // The IMP is published before the class, which readers match on.
            LENGTH_IMPS[i].store(length_imp as *mut c_void, Release);
            slot.store(cls, Release);
            return;
        }
    }
}

/// The buffer's length through the cached IMP of its class.
#[inline]
fn length_of(rt: &ObjcRuntime, buffer: Id) -> u64 {
    let cls = rt.class_of(buffer);
    for (i, slot) in SEEN_CLASSES.iter().enumerate() {
        let seen = slot.load(Acquire);
        if seen.is_null() {
            break;
        }
        if seen == cls {
            let imp = LENGTH_IMPS[i].load(Acquire);
            if imp.is_null() {
                return 0;
            }
            // SAFETY: the class's own `length` IMP (`NSUInteger (id, SEL)`),
            // recorded at its first sighting; `buffer` is alive (in dealloc,
            // before the original runs).
            return unsafe {
                let f: Length = std::mem::transmute::<*mut c_void, Length>(imp);
                f(buffer, LENGTH.get(rt))
            };
        }
    }
    // A subclass we never saw allocated: ask the runtime.
    send_u64_sel(rt, buffer, LENGTH.get(rt)).unwrap_or(0)
}

unsafe extern "C-unwind" fn buffer_dealloc(this: Id, cmd: Sel) {
    let Some((rt, orig)) = original(&DEALLOC, this) else {
        return;
    };
    if let Some(guard) = guard() {
        let depth = DepthGuard::enter(HookFamily::Free);
        if depth.outermost() {
            policy(guard, "dealloc", || {
                guard.on_buffer_freed(length_of(rt, this));
            });
        }
    }
    // SAFETY: as above; the object is still alive until the original runs.
    unsafe { orig.call(this, cmd) }
}
