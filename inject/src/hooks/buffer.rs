//! Buffer hooks: `dealloc` of the concrete buffer classes, so the ledger
//! sees frees and the cadence detector sees unload bursts without hooking
//! `release` (far hotter, and reached through `objc_release` on Apple).

use super::{install_on, original, policy, send_u64_sel, CachedSel};
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard};
use crate::hook_table::HookSlot;
use crate::objc_runtime::{Id, Imp, ObjcRuntime, Sel};
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering::*};

pub static DEALLOC: HookSlot = HookSlot::new(c"dealloc");
static LENGTH: CachedSel = CachedSel::new(c"length");

/// Buffer classes already handled (hooked, covered or not hookable).
const SEEN: usize = 8;
static SEEN_CLASSES: [AtomicPtr<c_void>; SEEN] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SEEN];

type Dealloc = unsafe extern "C-unwind" fn(Id, Sel);

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
    // First sighting: only a length-bearing class is worth hooking.
    if rt.responds(cls, LENGTH.get(rt)) {
        install_on(
            guard,
            rt,
            cls,
            "buffer",
            &[(&DEALLOC, buffer_dealloc as Imp)],
        );
    }
    for slot in &SEEN_CLASSES {
        if slot
            .compare_exchange(std::ptr::null_mut(), cls, AcqRel, Acquire)
            .is_ok()
            || slot.load(Acquire) == cls
        {
            return;
        }
    }
}

unsafe extern "C-unwind" fn buffer_dealloc(this: Id, cmd: Sel) {
    let Some((rt, imp)) = original(&DEALLOC, this) else {
        return;
    };
    // SAFETY: original IMP of `dealloc` for this class (`void (id, SEL)`).
    let orig: Dealloc = unsafe { std::mem::transmute::<Imp, _>(imp) };
    if let Some(guard) = guard() {
        let depth = DepthGuard::enter(HookFamily::Free);
        if depth.outermost() {
            policy(guard, "dealloc", || {
                let bytes = send_u64_sel(rt, this, LENGTH.get(rt)).unwrap_or(0);
                guard.on_buffer_freed(bytes);
            });
        }
    }
    // SAFETY: as above; the object is still alive until the original runs.
    unsafe { orig(this, cmd) }
}
