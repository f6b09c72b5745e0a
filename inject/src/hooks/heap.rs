//! Heap hooks: buffers carved from an `MTLHeap` (MLX uses its 1 MiB heap
//! for allocations under 256 bytes). Counted in the ledger; never refused
//! (the heap's memory was allocated, and checked, when the heap was made).

use super::{install_on, original};
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard};
use crate::hook_table::HookSlot;
use crate::objc_runtime::{Class, Id, ObjcRuntime, Sel};
use crate::typed_imp::Method2;

pub static HEAP_NEW_BUFFER: HookSlot<Method2<Id, usize, usize>> =
    HookSlot::new(c"newBufferWithLength:options:", "@@:QQ");

pub fn install(guard: &Guard, rt: &ObjcRuntime, cls: Class) {
    install_on(
        guard,
        rt,
        cls,
        "heap",
        &[HEAP_NEW_BUFFER.with_hook(heap_new_buffer)],
    );
}

unsafe extern "C-unwind" fn heap_new_buffer(
    this: Id,
    cmd: Sel,
    length: usize,
    options: usize,
) -> Id {
    let Some((_, orig)) = original(&HEAP_NEW_BUFFER, this) else {
        return std::ptr::null_mut();
    };
    let Some(guard) = guard() else {
        // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
        return unsafe { orig.call(this, cmd, length, options) };
    };
    let depth = DepthGuard::enter(HookFamily::Allocation);
    // SAFETY: the original (typed by its hook slot) with the caller's own arguments.
    let buffer = unsafe { orig.call(this, cmd, length, options) };
    if depth.outermost() {
        super::buffer::record_allocation(
            guard,
            "heap newBufferWithLength:options:",
            length as u64,
            buffer,
        );
    }
    buffer
}
