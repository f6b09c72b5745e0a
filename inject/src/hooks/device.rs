//! Device hooks: buffer allocation (size ceiling, ledger, load detection)
//! and the factories whose results' classes get hooked in turn (heap,
//! queue, residency set).

use super::{install_on, original, policy};
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, AllocDecision, Guard};
use crate::hook_table::HookSlot;
use crate::objc_runtime::{Class, Id, Imp, ObjcRuntime, Sel};
use std::ffi::c_void;

pub static NEW_BUFFER_WITH_LENGTH: HookSlot = HookSlot::new(c"newBufferWithLength:options:");
pub static NEW_BUFFER_WITH_BYTES: HookSlot = HookSlot::new(c"newBufferWithBytes:length:options:");
pub static NEW_BUFFER_NO_COPY: HookSlot =
    HookSlot::new(c"newBufferWithBytesNoCopy:length:options:deallocator:");
pub static NEW_HEAP: HookSlot = HookSlot::new(c"newHeapWithDescriptor:");
pub static NEW_COMMAND_QUEUE: HookSlot = HookSlot::new(c"newCommandQueue");
pub static NEW_COMMAND_QUEUE_MAX: HookSlot =
    HookSlot::new(c"newCommandQueueWithMaxCommandBufferCount:");
pub static NEW_RESIDENCY_SET: HookSlot = HookSlot::new(c"newResidencySetWithDescriptor:error:");

type NewBufferWithLength = unsafe extern "C-unwind" fn(Id, Sel, usize, usize) -> Id;
type NewBufferWithBytes = unsafe extern "C-unwind" fn(Id, Sel, *const c_void, usize, usize) -> Id;
type NewBufferNoCopy =
    unsafe extern "C-unwind" fn(Id, Sel, *mut c_void, usize, usize, *mut c_void) -> Id;
type NewWithObject = unsafe extern "C-unwind" fn(Id, Sel, Id) -> Id;
type NewPlain = unsafe extern "C-unwind" fn(Id, Sel) -> Id;
type NewWithCount = unsafe extern "C-unwind" fn(Id, Sel, usize) -> Id;
type NewWithObjectError = unsafe extern "C-unwind" fn(Id, Sel, Id, *mut Id) -> Id;

/// Hooks a device class (each class once).
pub fn install(guard: &Guard, rt: &ObjcRuntime, cls: Class) {
    install_on(
        guard,
        rt,
        cls,
        "device",
        &[
            (&NEW_BUFFER_WITH_LENGTH, new_buffer_with_length as Imp),
            (&NEW_BUFFER_WITH_BYTES, new_buffer_with_bytes as Imp),
            (&NEW_BUFFER_NO_COPY, new_buffer_no_copy as Imp),
            (&NEW_HEAP, new_heap as Imp),
            (&NEW_COMMAND_QUEUE, new_command_queue as Imp),
            (&NEW_COMMAND_QUEUE_MAX, new_command_queue_max as Imp),
            (&NEW_RESIDENCY_SET, new_residency_set as Imp),
        ],
    );
}

/// The shared allocation path: ceiling and load detection before, ledger
/// and buffer-class hooking after. `call` is the original.
#[inline]
fn allocate(bytes: u64, selector: &'static str, call: impl FnOnce() -> Id) -> Id {
    let Some(guard) = guard() else {
        return call();
    };
    let depth = DepthGuard::enter(HookFamily::Allocation);
    if !depth.outermost() {
        return call();
    }
    if let Some(AllocDecision::Refuse) =
        policy(guard, selector, || guard.before_allocation(bytes, selector))
    {
        return std::ptr::null_mut();
    }
    let buffer = call();
    super::buffer::record_allocation(guard, selector, bytes, buffer);
    buffer
}

unsafe extern "C-unwind" fn new_buffer_with_length(
    this: Id,
    cmd: Sel,
    length: usize,
    options: usize,
) -> Id {
    let Some((_, imp)) = original(&NEW_BUFFER_WITH_LENGTH, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `imp` is the original IMP recorded for this selector, whose C
    // signature is `NewBufferWithLength`; arguments are passed unchanged.
    let orig: NewBufferWithLength = unsafe { std::mem::transmute::<Imp, _>(imp) };
    allocate(length as u64, "newBufferWithLength:options:", || unsafe {
        // SAFETY: see above.
        orig(this, cmd, length, options)
    })
}

unsafe extern "C-unwind" fn new_buffer_with_bytes(
    this: Id,
    cmd: Sel,
    bytes: *const c_void,
    length: usize,
    options: usize,
) -> Id {
    let Some((_, imp)) = original(&NEW_BUFFER_WITH_BYTES, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: original IMP of `newBufferWithBytes:length:options:`.
    let orig: NewBufferWithBytes = unsafe { std::mem::transmute::<Imp, _>(imp) };
    allocate(
        length as u64,
        "newBufferWithBytes:length:options:",
        || unsafe {
            // SAFETY: see above; arguments unchanged.
            orig(this, cmd, bytes, length, options)
        },
    )
}

unsafe extern "C-unwind" fn new_buffer_no_copy(
    this: Id,
    cmd: Sel,
    pointer: *mut c_void,
    length: usize,
    options: usize,
    deallocator: *mut c_void,
) -> Id {
    let Some((_, imp)) = original(&NEW_BUFFER_NO_COPY, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: original IMP of `newBufferWithBytesNoCopy:length:options:deallocator:`.
    let orig: NewBufferNoCopy = unsafe { std::mem::transmute::<Imp, _>(imp) };
    allocate(
        length as u64,
        "newBufferWithBytesNoCopy:length:options:deallocator:",
        || unsafe {
            // SAFETY: see above; arguments unchanged.
            orig(this, cmd, pointer, length, options, deallocator)
        },
    )
}

/// Runs a factory and hooks the class of what it returned.
#[inline]
fn create(
    hook: &'static str,
    call: impl FnOnce() -> Id,
    install: fn(&Guard, &ObjcRuntime, Class),
) -> Id {
    let obj = call();
    if obj.is_null() {
        return obj;
    }
    if let (Some(guard), Some(rt)) = (guard(), ObjcRuntime::resolved()) {
        policy(guard, hook, || install(guard, rt, rt.class_of(obj)));
    }
    obj
}

unsafe extern "C-unwind" fn new_heap(this: Id, cmd: Sel, descriptor: Id) -> Id {
    let Some((_, imp)) = original(&NEW_HEAP, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: original IMP of `newHeapWithDescriptor:` (`id (id, SEL, id)`).
    let orig: NewWithObject = unsafe { std::mem::transmute::<Imp, _>(imp) };
    create(
        "newHeapWithDescriptor:",
        // SAFETY: `orig` is the method's original IMP with this signature,
        // called with the receiver and arguments the hook was given.
        || unsafe { orig(this, cmd, descriptor) },
        super::heap::install,
    )
}

unsafe extern "C-unwind" fn new_command_queue(this: Id, cmd: Sel) -> Id {
    let Some((_, imp)) = original(&NEW_COMMAND_QUEUE, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: original IMP of `newCommandQueue` (`id (id, SEL)`).
    let orig: NewPlain = unsafe { std::mem::transmute::<Imp, _>(imp) };
    create(
        "newCommandQueue",
        // SAFETY: `orig` is the method's original IMP with this signature,
        // called with the receiver and arguments the hook was given.
        || unsafe { orig(this, cmd) },
        super::queue::install,
    )
}

unsafe extern "C-unwind" fn new_command_queue_max(this: Id, cmd: Sel, count: usize) -> Id {
    let Some((_, imp)) = original(&NEW_COMMAND_QUEUE_MAX, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: original IMP of `newCommandQueueWithMaxCommandBufferCount:`.
    let orig: NewWithCount = unsafe { std::mem::transmute::<Imp, _>(imp) };
    create(
        "newCommandQueueWithMaxCommandBufferCount:",
        // SAFETY: `orig` is the method's original IMP with this signature,
        // called with the receiver and arguments the hook was given.
        || unsafe { orig(this, cmd, count) },
        super::queue::install,
    )
}

unsafe extern "C-unwind" fn new_residency_set(
    this: Id,
    cmd: Sel,
    descriptor: Id,
    error: *mut Id,
) -> Id {
    let Some((_, imp)) = original(&NEW_RESIDENCY_SET, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: original IMP of `newResidencySetWithDescriptor:error:`
    // (`id (id, SEL, id, id *)`). Never refused: MLX treats nil as fatal.
    let orig: NewWithObjectError = unsafe { std::mem::transmute::<Imp, _>(imp) };
    create(
        "newResidencySetWithDescriptor:error:",
        // SAFETY: `orig` is the method's original IMP with this signature,
        // called with the receiver and arguments the hook was given.
        || unsafe { orig(this, cmd, descriptor, error) },
        super::residency_set::install,
    )
}
