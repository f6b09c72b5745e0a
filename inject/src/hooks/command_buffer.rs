//! Command-buffer hooks and our completion handler.
//!
//! At creation (from the queue hooks) a command buffer is entered in the
//! `CommandBufferTable` and given our completion handler, before the
//! application can add its own, so ours runs first; we never add one after
//! `commit` (Metal asserts). `commit` assigns the buffer its sequence
//! number while holding a pass through the commit gate; our handler marks
//! that number completed, which advances the teardown watermark.

use super::{install_on, original, policy};
use crate::completion_block::completion_block;
use crate::depth::{self, DepthGuard, HookFamily};
use crate::guard::{guard, Guard};
use crate::hook_table::HookSlot;
use crate::objc_runtime::{Id, ObjcRuntime, Sel};
use crate::typed_imp::Method0;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::*};

pub static COMMIT: HookSlot<Method0<()>> = HookSlot::new(c"commit", "v@:");
pub static WAIT_UNTIL_COMPLETED: HookSlot<Method0<()>> =
    HookSlot::new(c"waitUntilCompleted", "v@:");

static LATE_EXIT_HOOK: AtomicBool = AtomicBool::new(false);

/// Tracks a new command buffer and adds our handler (hooking its class first).
pub fn on_created(guard: &'static Guard, cb: Id) {
    let Some(rt) = ObjcRuntime::resolved() else {
        return;
    };
    let cls = rt.class_of(cb);
    if !COMMIT.seen(cls) {
        install_on(
            guard,
            rt,
            cls,
            "command_buffer",
            &[
                COMMIT.with_hook(commit),
                WAIT_UNTIL_COMPLETED.with_hook(wait_until_completed),
            ],
        );
    }
    let Some(block) = completion_block(on_completed) else {
        return;
    };
    let Some((add, sel)) = crate::objc_messages::completed_handler_adder(rt, cls) else {
        return;
    };
    if !guard.track_command_buffer(cb as usize) {
        return;
    }
    // SAFETY: `cb` is the live command buffer the driver just returned;
    // `block` is our heap block (a live, process-long Block_copy result),
    // which the driver copies (takes a reference to) and releases after
    // calling it.
    unsafe { add.call(cb, sel, block) };
}

/// Our completion handler's body (the block's invoke function).
unsafe extern "C-unwind" fn on_completed(_block: *mut c_void, cb: Id) {
    // Plain atomics; still, nothing may unwind into the driver's
    // completion queue.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(guard) = guard() else {
            return;
        };
        depth::mark_completion_thread();
        guard.on_command_buffer_completed(cb as usize);
    }));
}

unsafe extern "C-unwind" fn commit(this: Id, cmd: Sel) {
    let Some((_, orig)) = original(&COMMIT, this) else {
        return;
    };
    let Some(guard) = guard() else {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd) };
    };
    let depth = DepthGuard::enter(HookFamily::Commit);
    if !depth.outermost() {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd) };
    }
    let pass = policy(guard, "commit", || {
        // A commit from a completion handler never waits at the gate: the
        // completions the reaper waits for would queue behind it.
        guard.begin_commit(this as usize, depth::is_completion_thread())
    });
    // SAFETY: the caller's own arguments, passed on to the original. The pass (if any) is an atomic count, not a lock:
    // it only makes the reaper wait for this commit to return.
    unsafe { orig.call(this, cmd) };
    drop(pass);
    if !LATE_EXIT_HOOK.swap(true, Relaxed) {
        // Registered again now that the application's own exit-time
        // teardown is registered, so the drain runs before it.
        crate::exit_drain::register();
    }
}

unsafe extern "C-unwind" fn wait_until_completed(this: Id, cmd: Sel) {
    let Some((_, orig)) = original(&WAIT_UNTIL_COMPLETED, this) else {
        return;
    };
    let _depth = DepthGuard::enter(HookFamily::Wait);
    if let Some(guard) = guard() {
        guard.stats().waits.fetch_add(1, Relaxed);
    }
    // SAFETY: the caller's own arguments, passed on to the original.
    unsafe { orig.call(this, cmd) }
}
