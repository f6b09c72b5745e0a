//! The original IMP of every hooked (class, selector), and the install step
//! that hooks a concrete class once.
//!
//! One `HookSlot<F>` per hooked selector holds the (class, original IMP)
//! pairs for the concrete classes seen so far. Written only under the
//! install lock; read lock-free on the hot path (acquire on the length).
//!
//! The slot's type `F` is the selector's C signature, written once next to
//! the selector and its encoding shape: a class is hooked only if its
//! method's type encoding (`method_getTypeEncoding`) has that shape, else
//! it is left alone with a breadcrumb (fail open). So the originals the slot
//! hands out are [`TypedImp<F>`]s, and a hook calls its original without a
//! transmute of its own.

use crate::fork_safe_lock::ForkSafeLock;
use crate::objc_runtime::{Class, Id, Imp, ObjcRuntime, SwizzleError};
use crate::typed_imp::{encoding_shape, untyped, TypedImp};
use std::ffi::{c_void, CStr};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

/// Concrete classes per selector we can hook (Metal has one per GPU family,
/// plus debug-layer wrappers).
pub const MAX_CLASSES_PER_SELECTOR: usize = 16;
/// Deepest superclass walk when an instance of a subclass reaches a hook.
const MAX_SUPERCLASS_WALK: usize = 32;

/// The untyped table of one selector (what `install` fills).
pub struct SlotTable {
    pub selector: &'static CStr,
    /// The calling-convention shape of the selector's type encoding
    /// (`typed_imp::encoding_shape`), e.g. `@@:QQ`.
    pub shape: &'static str,
    classes: [AtomicPtr<c_void>; MAX_CLASSES_PER_SELECTOR],
    originals: [AtomicPtr<c_void>; MAX_CLASSES_PER_SELECTOR],
    len: AtomicUsize,
    /// Every class an install was attempted on (hooked, covered by a hooked
    /// superclass, or without the method), so repeat sightings skip the
    /// install lock.
    seen: [AtomicPtr<c_void>; MAX_CLASSES_PER_SELECTOR],
    seen_len: AtomicUsize,
}

/// The hook slot of a selector whose C signature is `F`.
pub struct HookSlot<F> {
    table: SlotTable,
    _signature: PhantomData<F>,
}

impl<F: Copy> HookSlot<F> {
    /// `shape`: the calling-convention shape of the selector's encoding.
    pub const fn new(selector: &'static CStr, shape: &'static str) -> Self {
        HookSlot {
            table: SlotTable::new(selector, shape),
            _signature: PhantomData,
        }
    }

    /// This slot with `hook` (of the same signature), for `install_on`.
    pub fn with_hook(&'static self, hook: F) -> (&'static SlotTable, Imp) {
        (&self.table, untyped(hook))
    }

    /// Whether an install was already attempted on `cls` (lock-free).
    #[inline]
    pub fn seen(&self, cls: Class) -> bool {
        self.table.seen(cls)
    }

    /// The original to call for `obj` (see [`SlotTable::original_for`]).
    #[inline]
    pub fn original_for(&self, rt: &ObjcRuntime, obj: Id) -> Option<TypedImp<F>> {
        let imp = self.table.original_for(rt, obj)?;
        // SAFETY: the table holds, for this selector, the IMP a class
        // resolved before we hooked it; `install` hooked the class only
        // after its method's type encoding had this slot's shape, the shape
        // of `F`, the selector's signature as the slot's declaration spells
        // it out.
        Some(unsafe { TypedImp::assume(imp) })
    }
}

impl SlotTable {
    const fn new(selector: &'static CStr, shape: &'static str) -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const NULL: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
        Self {
            selector,
            shape,
            classes: [NULL; MAX_CLASSES_PER_SELECTOR],
            originals: [NULL; MAX_CLASSES_PER_SELECTOR],
            len: AtomicUsize::new(0),
            seen: [NULL; MAX_CLASSES_PER_SELECTOR],
            seen_len: AtomicUsize::new(0),
        }
    }

    /// Whether an install was already attempted on `cls` (lock-free).
    #[inline]
    pub fn seen(&self, cls: Class) -> bool {
        let n = self.seen_len.load(Acquire);
        (0..n).any(|i| self.seen[i].load(Relaxed) == cls)
    }

    /// Only under `INSTALL_LOCK`.
    fn mark_seen(&self, cls: Class) {
        let n = self.seen_len.load(Acquire);
        if n < MAX_CLASSES_PER_SELECTOR && !self.seen(cls) {
            self.seen[n].store(cls, Relaxed);
            self.seen_len.store(n + 1, Release);
        }
    }

    #[inline]
    fn find(&self, cls: Class) -> Option<Imp> {
        let n = self.len.load(Acquire);
        (0..n)
            .find(|&i| self.classes[i].load(Relaxed) == cls)
            .map(|i| self.originals[i].load(Relaxed) as Imp)
    }

    /// Whether a method's type encoding has this slot's shape. An absent
    /// encoding (a runtime that keeps none) cannot be checked and passes;
    /// one that does not parse does not.
    pub fn encoding_matches(&self, encoding: Option<&CStr>) -> bool {
        let Some(encoding) = encoding else {
            return true;
        };
        let mut buf = [0u8; 24];
        encoding_shape(encoding.to_bytes(), &mut buf) == Some(self.shape.as_bytes())
    }

    /// Whether `cls` itself was hooked for this selector.
    pub fn contains(&self, cls: Class) -> bool {
        self.find(cls).is_some()
    }

    /// Only under `INSTALL_LOCK`: a single writer.
    fn record(&self, cls: Class, original: Imp) -> bool {
        let n = self.len.load(Acquire);
        if n == MAX_CLASSES_PER_SELECTOR {
            return false;
        }
        self.originals[n].store(original as *mut c_void, Relaxed);
        self.classes[n].store(cls, Relaxed);
        self.len.store(n + 1, Release);
        true
    }

    /// The original IMP to call for `obj`: its class's entry, or the nearest
    /// hooked superclass's (an instance of a subclass that inherits our hook).
    #[inline]
    pub fn original_for(&self, rt: &ObjcRuntime, obj: Id) -> Option<Imp> {
        let mut cls = rt.class_of(obj);
        for _ in 0..MAX_SUPERCLASS_WALK {
            if cls.is_null() {
                return None;
            }
            if let Some(imp) = self.find(cls) {
                return Some(imp);
            }
            cls = rt.superclass(cls);
        }
        None
    }
}

static INSTALL_LOCK: ForkSafeLock = ForkSafeLock::new();

/// In a forked child: a thread that was installing hooks stayed behind.
pub fn reset_after_fork() {
    INSTALL_LOCK.reset_after_fork();
}

/// What one install attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed,
    /// This class was hooked before (each class once).
    AlreadyInstalled,
    /// The class inherits the hook from a hooked superclass.
    CoveredBySuperclass,
    /// The class does not implement the selector.
    NotImplemented,
    TableFull,
    /// The class's method has a type encoding of another shape than the
    /// slot's: left unhooked (fail open).
    EncodingMismatch,
}

/// Hooks `slot.selector` on `cls` with `hook` unless already done.
pub fn install(rt: &ObjcRuntime, cls: Class, slot: &SlotTable, hook: Imp) -> InstallOutcome {
    if cls.is_null() {
        return InstallOutcome::NotImplemented;
    }
    if slot.seen(cls) {
        return InstallOutcome::AlreadyInstalled;
    }
    let _lock = INSTALL_LOCK.lock();
    if slot.contains(cls) {
        return InstallOutcome::AlreadyInstalled;
    }
    slot.mark_seen(cls);
    let sel = rt.sel(slot.selector);
    if !rt.responds(cls, sel) {
        return InstallOutcome::NotImplemented;
    }
    if !slot.encoding_matches(rt.type_encoding(cls, sel)) {
        return InstallOutcome::EncodingMismatch;
    }
    match rt.override_method(cls, sel, hook, |orig| slot.record(cls, orig)) {
        Ok(_) => InstallOutcome::Installed,
        Err(SwizzleError::AlreadyHooked) => InstallOutcome::CoveredBySuperclass,
        Err(SwizzleError::NotImplemented) => InstallOutcome::NotImplemented,
        Err(SwizzleError::TableFull) => InstallOutcome::TableFull,
    }
}
