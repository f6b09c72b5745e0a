//! Message sends the library makes itself (`retain`, `release`, `length`,
//! `count`, `objectAtIndex:`), through IMPs cached per class, so a hot path
//! never calls `sel_registerName` or a method lookup once a class has been
//! seen.
//!
//! - [`CachedSel`]: a selector interned once.
//! - [`ClassImpCache`]: the IMP one selector resolves to on each class seen,
//!   in a fixed table (lock-free: an entry's IMP is published before its
//!   class, which readers match on). A class beyond the table's capacity is
//!   answered by the runtime each time (slower, still no allocation).
//!
//! Depends on `objc_runtime` only: the hooks and the reaper both use it.

use crate::objc_runtime::{Class, Id, Imp, ObjcRuntime, Sel};
use crate::typed_imp::{Method1, TypedImp};
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

/// A selector interned once and cached (hot paths avoid `sel_registerName`).
pub struct CachedSel {
    name: &'static CStr,
    sel: AtomicPtr<c_void>,
}

impl CachedSel {
    pub const fn new(name: &'static CStr) -> Self {
        CachedSel {
            name,
            sel: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    #[inline]
    pub fn get(&self, rt: &ObjcRuntime) -> Sel {
        let s = self.sel.load(Acquire);
        if !s.is_null() {
            return s as Sel;
        }
        let s = rt.sel(self.name);
        self.sel.store(s as *mut _, Release);
        s
    }
}

/// Classes per selector whose IMP is cached.
const CLASSES: usize = 16;

/// What the IMP slot holds for a class that does not respond.
const NO_IMP: *mut c_void = std::ptr::dangling_mut::<c_void>();

/// The IMP of one selector for each class seen (see the module doc).
pub struct ClassImpCache {
    pub sel: CachedSel,
    classes: [AtomicPtr<c_void>; CLASSES],
    imps: [AtomicPtr<c_void>; CLASSES],
    next: AtomicUsize,
}

impl ClassImpCache {
    pub const fn new(name: &'static CStr) -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const NULL: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
        ClassImpCache {
            sel: CachedSel::new(name),
            classes: [NULL; CLASSES],
            imps: [NULL; CLASSES],
            next: AtomicUsize::new(0),
        }
    }

    /// The IMP `cls` resolves for this selector; `None` if it does not respond.
    #[inline]
    pub fn imp(&self, rt: &ObjcRuntime, cls: Class) -> Option<Imp> {
        if cls.is_null() {
            return None;
        }
        let n = self.next.load(Acquire).min(CLASSES);
        for i in 0..n {
            if self.classes[i].load(Acquire) == cls {
                let imp = self.imps[i].load(Acquire);
                if imp.is_null() {
                    // Claimed, not yet published by its writer: ask below.
                    break;
                }
                return (imp != NO_IMP).then_some(imp as Imp);
            }
        }
        self.first_sighting(rt, cls)
    }

    #[cold]
    fn first_sighting(&self, rt: &ObjcRuntime, cls: Class) -> Option<Imp> {
        let sel = self.sel.get(rt);
        let imp = rt.responds(cls, sel).then(|| rt.imp(cls, sel));
        let i = self.next.fetch_add(1, AcqRel);
        if i < CLASSES {
            self.imps[i].store(imp.map_or(NO_IMP, |p| p as *mut c_void), Release);
            self.classes[i].store(cls, Release);
        }
        imp
    }
}

static RETAIN: ClassImpCache = ClassImpCache::new(c"retain");
static RELEASE: ClassImpCache = ClassImpCache::new(c"release");
static LENGTH: ClassImpCache = ClassImpCache::new(c"length");
static ADD_COMPLETED_HANDLER: ClassImpCache = ClassImpCache::new(c"addCompletedHandler:");

/// `addCompletedHandler:` of `cls` (cached per class) and its selector;
/// `None` if the class does not respond.
#[inline]
pub fn completed_handler_adder(
    rt: &ObjcRuntime,
    cls: Class,
) -> Option<(TypedImp<Method1<(), *mut c_void>>, Sel)> {
    let imp = ADD_COMPLETED_HANDLER.imp(rt, cls)?;
    // SAFETY: `addCompletedHandler:` is
    // `void (id, SEL, MTLCommandBufferHandler)`, the handler a block pointer.
    Some((
        unsafe { TypedImp::assume(imp) },
        ADD_COMPLETED_HANDLER.sel.get(rt),
    ))
}

/// Interns the selectors of the cached sends (at install, so the first
/// hooked call does not).
pub fn warm_up(rt: &ObjcRuntime) {
    for cache in [&RETAIN, &RELEASE, &LENGTH, &ADD_COMPLETED_HANDLER] {
        cache.sel.get(rt);
    }
}

/// `[obj retain]` through its class's cached IMP.
#[inline]
pub fn object_retain(rt: &ObjcRuntime, obj: Id) {
    send_void(rt, &RETAIN, obj);
}

/// `[obj release]` through its class's cached IMP.
#[inline]
pub fn object_release(rt: &ObjcRuntime, obj: Id) {
    send_void(rt, &RELEASE, obj);
}

/// `[obj length]` (an `MTLBuffer`'s or allocation's size); `None` if it
/// does not respond.
#[inline]
pub fn object_length(rt: &ObjcRuntime, obj: Id) -> Option<u64> {
    if obj.is_null() {
        return None;
    }
    let imp = LENGTH.imp(rt, rt.class_of(obj))?;
    // SAFETY: `length` is `NSUInteger (id, SEL)` (u64 on LP64); `imp` is
    // what `obj`'s class resolves for it, and `obj` is alive (the caller's
    // invariant).
    Some(unsafe {
        let f: unsafe extern "C-unwind" fn(Id, Sel) -> u64 = std::mem::transmute::<Imp, _>(imp);
        f(obj, LENGTH.sel.get(rt))
    })
}

#[inline]
fn send_void(rt: &ObjcRuntime, cache: &ClassImpCache, obj: Id) {
    if obj.is_null() {
        return;
    }
    let Some(imp) = cache.imp(rt, rt.class_of(obj)) else {
        return;
    };
    // SAFETY: `imp` is what `obj`'s class resolves for `retain`/`release`,
    // both callable as `(id, SEL)`; the result of `retain` (the object
    // itself) is ignored, which the calling convention allows.
    unsafe {
        let f: unsafe extern "C-unwind" fn(Id, Sel) -> Id = std::mem::transmute::<Imp, _>(imp);
        f(obj, cache.sel.get(rt));
    }
}

/// `[obj <selector>]` for an unsigned-integer getter
/// (`recommendedMaxWorkingSetSize`, `count`): cold paths only (it interns
/// the selector and looks the method up); `None` if it does not respond.
pub fn send_u64(rt: &ObjcRuntime, obj: Id, selector: &CStr) -> Option<u64> {
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
