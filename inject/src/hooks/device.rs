//! Device hooks: buffer allocation (size ceiling, ledger, load detection)
//! and the factories whose results' classes get hooked in turn (heap,
//! queue, residency set).

use super::{install_on, original, policy};
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, AllocDecision, Guard};
use crate::hook_table::HookSlot;
use crate::objc_runtime::{Class, Id, ObjcRuntime, Sel};
use crate::typed_imp::{Method0, Method1, Method2, Method3, Method4};
use std::ffi::c_void;

pub static NEW_BUFFER_WITH_LENGTH: HookSlot<Method2<Id, usize, usize>> =
    HookSlot::new(c"newBufferWithLength:options:", "@@:QQ");
pub static NEW_BUFFER_WITH_BYTES: HookSlot<Method3<Id, *const c_void, usize, usize>> =
    HookSlot::new(c"newBufferWithBytes:length:options:", "@@:^QQ");
pub static NEW_BUFFER_NO_COPY: HookSlot<Method4<Id, *mut c_void, usize, usize, *mut c_void>> =
    HookSlot::new(
        c"newBufferWithBytesNoCopy:length:options:deallocator:",
        "@@:^QQ@",
    );
pub static NEW_HEAP: HookSlot<Method1<Id, Id>> = HookSlot::new(c"newHeapWithDescriptor:", "@@:@");
pub static NEW_COMMAND_QUEUE: HookSlot<Method0<Id>> = HookSlot::new(c"newCommandQueue", "@@:");
pub static NEW_COMMAND_QUEUE_MAX: HookSlot<Method1<Id, usize>> =
    HookSlot::new(c"newCommandQueueWithMaxCommandBufferCount:", "@@:Q");
pub static NEW_RESIDENCY_SET: HookSlot<Method2<Id, Id, *mut Id>> =
    HookSlot::new(c"newResidencySetWithDescriptor:error:", "@@:@^");

/// Hooks a device class (each class once).
pub fn install(guard: &Guard, rt: &ObjcRuntime, cls: Class) {
    install_on(
        guard,
        rt,
        cls,
        "device",
        &[
            NEW_BUFFER_WITH_LENGTH.with_hook(new_buffer_with_length),
            NEW_BUFFER_WITH_BYTES.with_hook(new_buffer_with_bytes),
            NEW_BUFFER_NO_COPY.with_hook(new_buffer_no_copy),
            NEW_HEAP.with_hook(new_heap),
            NEW_COMMAND_QUEUE.with_hook(new_command_queue),
            NEW_COMMAND_QUEUE_MAX.with_hook(new_command_queue_max),
            NEW_RESIDENCY_SET.with_hook(new_residency_set),
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
    let Some((_, orig)) = original(&NEW_BUFFER_WITH_LENGTH, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
    allocate(length as u64, "newBufferWithLength:options:", || unsafe {
        orig.call(this, cmd, length, options)
    })
}

unsafe extern "C-unwind" fn new_buffer_with_bytes(
    this: Id,
    cmd: Sel,
    bytes: *const c_void,
    length: usize,
    options: usize,
) -> Id {
    let Some((_, orig)) = original(&NEW_BUFFER_WITH_BYTES, this) else {
        return std::ptr::null_mut();
    };
    allocate(
        length as u64,
        "newBufferWithBytes:length:options:",
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        || unsafe { orig.call(this, cmd, bytes, length, options) },
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
    let Some((_, orig)) = original(&NEW_BUFFER_NO_COPY, this) else {
        return std::ptr::null_mut();
    };
    allocate(
        length as u64,
        "newBufferWithBytesNoCopy:length:options:deallocator:",
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        || unsafe { orig.call(this, cmd, pointer, length, options, deallocator) },
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
    let Some((_, orig)) = original(&NEW_HEAP, this) else {
        return std::ptr::null_mut();
    };
    create(
        "newHeapWithDescriptor:",
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        || unsafe { orig.call(this, cmd, descriptor) },
        super::heap::install,
    )
}

unsafe extern "C-unwind" fn new_command_queue(this: Id, cmd: Sel) -> Id {
    let Some((_, orig)) = original(&NEW_COMMAND_QUEUE, this) else {
        return std::ptr::null_mut();
    };
    create(
        "newCommandQueue",
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        || unsafe { orig.call(this, cmd) },
        super::queue::install,
    )
}

unsafe extern "C-unwind" fn new_command_queue_max(this: Id, cmd: Sel, count: usize) -> Id {
    let Some((_, orig)) = original(&NEW_COMMAND_QUEUE_MAX, this) else {
        return std::ptr::null_mut();
    };
    create(
        "newCommandQueueWithMaxCommandBufferCount:",
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        || unsafe { orig.call(this, cmd, count) },
        super::queue::install,
    )
}

unsafe extern "C-unwind" fn new_residency_set(
    this: Id,
    cmd: Sel,
    descriptor: Id,
    error: *mut Id,
) -> Id {
    let Some((_, orig)) = original(&NEW_RESIDENCY_SET, this) else {
        return std::ptr::null_mut();
    };
    create(
        "newResidencySetWithDescriptor:error:",
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        || unsafe { orig.call(this, cmd, descriptor, error) },
        super::residency_set::install,
    )
}
