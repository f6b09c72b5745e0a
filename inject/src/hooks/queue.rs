//! Queue hooks: every command buffer is created through here. Lever (a):
//! `commandBufferWithUnretainedReferences` returns a command buffer with
//! retained references instead (the queue's own `commandBuffer`), so the
//! driver keeps every bound buffer alive until the command buffer completes,
//! and a cache trim cannot free a buffer that is still in flight. Each new
//! command buffer gets our completion handler at creation (see
//! `command_buffer`).

use super::{install_on, original, policy};
use crate::breadcrumb_sink::Event;
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard};
use crate::hook_table::HookSlot;
use crate::objc_messages::CachedSel;
use crate::objc_runtime::{Class, Id, ObjcRuntime, Sel};
use crate::typed_imp::{Method0, Method1};
use std::sync::atomic::Ordering::Relaxed;

pub static COMMAND_BUFFER: HookSlot<Method0<Id>> = HookSlot::new(c"commandBuffer", "@@:");
pub static COMMAND_BUFFER_UNRETAINED: HookSlot<Method0<Id>> =
    HookSlot::new(c"commandBufferWithUnretainedReferences", "@@:");
pub static COMMAND_BUFFER_WITH_DESCRIPTOR: HookSlot<Method1<Id, Id>> =
    HookSlot::new(c"commandBufferWithDescriptor:", "@@:@");

static COMMAND_BUFFER_SEL: CachedSel = CachedSel::new(c"commandBuffer");

pub fn install(guard: &Guard, rt: &ObjcRuntime, cls: Class) {
    install_on(
        guard,
        rt,
        cls,
        "queue",
        &[
            COMMAND_BUFFER.with_hook(command_buffer),
            COMMAND_BUFFER_UNRETAINED.with_hook(command_buffer_unretained),
            COMMAND_BUFFER_WITH_DESCRIPTOR.with_hook(command_buffer_with_descriptor),
        ],
    );
}

/// Shared tail: track the new command buffer and give it our handler.
#[inline]
fn created(guard: &'static Guard, hook: &'static str, cb: Id) -> Id {
    if !cb.is_null() {
        policy(guard, hook, || super::command_buffer::on_created(guard, cb));
    }
    cb
}

unsafe extern "C-unwind" fn command_buffer(this: Id, cmd: Sel) -> Id {
    let Some((_, orig)) = original(&COMMAND_BUFFER, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the caller's own arguments, passed on to the original.
    let call = || unsafe { orig.call(this, cmd) };
    let Some(guard) = guard() else {
        return call();
    };
    let depth = DepthGuard::enter(HookFamily::Creation);
    let cb = call();
    if !depth.outermost() {
        return cb;
    }
    created(guard, "commandBuffer", cb)
}

unsafe extern "C-unwind" fn command_buffer_unretained(this: Id, cmd: Sel) -> Id {
    let Some((rt, orig)) = original(&COMMAND_BUFFER_UNRETAINED, this) else {
        return std::ptr::null_mut();
    };
    let Some(guard) = guard() else {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd) };
    };
    let depth = DepthGuard::enter(HookFamily::Creation);
    if !depth.outermost() {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd) };
    }
    // Lever (a): the retained variant, when this queue class has one.
    let retained_imp = policy(guard, "commandBufferWithUnretainedReferences", || {
        if !guard.config().retain_references {
            return None;
        }
        let retained = COMMAND_BUFFER.original_for(rt, this);
        let n = guard.stats().retained_upgrades.fetch_add(1, Relaxed);
        if n == 0 {
            guard.post(
                Event::new(
                    "GUARD_RETAIN",
                    if guard.acts() {
                        "unretained_command_buffers_now_retained"
                    } else {
                        "would_retain_unretained_command_buffers"
                    },
                )
                .with("available", retained.is_some() as u64),
            );
        }
        retained.filter(|_| guard.acts())
    })
    .flatten();
    let cb = match retained_imp {
        // SAFETY: the original `commandBuffer` of this queue class, called
        // on the caller's receiver with its own selector.
        Some(retained) => unsafe { retained.call(this, COMMAND_BUFFER_SEL.get(rt)) },
        // SAFETY: the caller's own arguments, passed on to the original.
        None => unsafe { orig.call(this, cmd) },
    };
    created(guard, "commandBufferWithUnretainedReferences", cb)
}

unsafe extern "C-unwind" fn command_buffer_with_descriptor(
    this: Id,
    cmd: Sel,
    descriptor: Id,
) -> Id {
    let Some((_, orig)) = original(&COMMAND_BUFFER_WITH_DESCRIPTOR, this) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the caller's own arguments, passed on to the original.
    let cb = unsafe { orig.call(this, cmd, descriptor) };
    let Some(guard) = guard() else {
        return cb;
    };
    let depth = DepthGuard::enter(HookFamily::Creation);
    if !depth.outermost() {
        return cb;
    }
    created(guard, "commandBufferWithDescriptor:", cb)
}
