//! Residency-set hooks: levers (b) and (d), per `METALGUARD_RESIDENCY`.
//!
//! - `defer` (default): `removeAllocation:` is queued for the reaper, which
//!   performs it (and the set's `commit`) once every command buffer
//!   committed before it has completed. The set's own `commit` passes
//!   through (it commits additions). Re-adding an allocation whose removal
//!   is still queued cancels the removal instead.
//! - `keep`: everything passes through.
//! - `off`: `addAllocation:` and `removeAllocation:` do nothing, so nothing
//!   is wired (the configuration that ran clean in mlx#3186).
//!
//! In observer mode every call passes through and the first of each kind
//! is logged with what would have happened.

use super::{install_on, original, policy};
use crate::breadcrumb_sink::Event;
use crate::depth::{DepthGuard, HookFamily};
use crate::guard::{guard, Guard, FULL_RING_WAIT};
use crate::hook_table::HookSlot;
use crate::objc_messages::{object_length, object_release, object_retain};
use crate::objc_runtime::{Class, Id, ObjcRuntime, Sel};
use crate::reaper::Removal;
use crate::typed_imp::{Method0, Method1};
use metal_guard_core::engine::commit_gate::CommitPass;
use metal_guard_core::engine::config::ResidencyPolicy;
use std::sync::atomic::{AtomicBool, Ordering::*};

pub static ADD_ALLOCATION: HookSlot<Method1<(), Id>> = HookSlot::new(c"addAllocation:", "v@:@");
pub static REMOVE_ALLOCATION: HookSlot<Method1<(), Id>> =
    HookSlot::new(c"removeAllocation:", "v@:@");
pub static SET_COMMIT: HookSlot<Method0<()>> = HookSlot::new(c"commit", "v@:");

static NOTED_NOOP: AtomicBool = AtomicBool::new(false);
static NOTED_DEFER: AtomicBool = AtomicBool::new(false);

pub fn install(guard: &Guard, rt: &ObjcRuntime, cls: Class) {
    crate::objc_messages::warm_up(rt);
    install_on(
        guard,
        rt,
        cls,
        "residency_set",
        &[
            ADD_ALLOCATION.with_hook(add_allocation),
            REMOVE_ALLOCATION.with_hook(remove_allocation),
            SET_COMMIT.with_hook(set_commit),
        ],
    );
}

fn note_once(guard: &Guard, flag: &AtomicBool, acted: &'static str, observed: &'static str) {
    if !flag.swap(true, Relaxed) {
        guard.post(Event::new(
            "GUARD_RESIDENCY",
            if guard.acts() { acted } else { observed },
        ));
    }
}

/// What a residency hook does with one call.
enum Action<'g> {
    PassThrough,
    /// `defer` mode: pass through holding a pass through the residency gate
    /// (an atomic count the reaper waits to drain; `None`: the wait for a
    /// reaper batch timed out and the call goes on without one).
    PassThroughInGate(Option<CommitPass<'g>>),
    Skip,
}

unsafe extern "C-unwind" fn add_allocation(this: Id, cmd: Sel, allocation: Id) {
    let Some((rt, orig)) = original(&ADD_ALLOCATION, this) else {
        return;
    };
    let Some(guard) = guard() else {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd, allocation) };
    };
    let depth = DepthGuard::enter(HookFamily::Residency);
    if !depth.outermost() {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd, allocation) };
    }
    let action = policy(guard, "addAllocation:", || match guard.config().residency {
        ResidencyPolicy::Keep => Action::PassThrough,
        ResidencyPolicy::Off => {
            note_once(
                guard,
                &NOTED_NOOP,
                "add_allocation_skipped_wired_limit_off",
                "would_skip_add_allocation",
            );
            if guard.acts() {
                guard.stats().residency_noops.fetch_add(1, Relaxed);
                Action::Skip
            } else {
                Action::PassThrough
            }
        }
        ResidencyPolicy::Defer => {
            // Inside the gate first: the reaper cannot be taking removals
            // while we look for one to cancel.
            let pass = guard.enter_residency_call();
            if guard.acts() {
                if let Some(cancelled) = guard.cancel_removal(this as usize, allocation as usize) {
                    // Still in the set: the queued removal is dropped, and
                    // so is our hold on both objects.
                    object_release(rt, cancelled.allocation as Id);
                    object_release(rt, cancelled.set as Id);
                    return Action::Skip;
                }
            }
            Action::PassThroughInGate(pass)
        }
    })
    .unwrap_or(Action::PassThrough);
    match action {
        Action::Skip => {}
        // SAFETY: the caller's own arguments, passed on to the original.
        Action::PassThrough => unsafe { orig.call(this, cmd, allocation) },
        Action::PassThroughInGate(pass) => {
            // SAFETY: the caller's own arguments, passed on to the original.
            unsafe { orig.call(this, cmd, allocation) };
            drop(pass);
        }
    }
}

unsafe extern "C-unwind" fn remove_allocation(this: Id, cmd: Sel, allocation: Id) {
    let Some((rt, orig)) = original(&REMOVE_ALLOCATION, this) else {
        return;
    };
    let Some(guard) = guard() else {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd, allocation) };
    };
    let depth = DepthGuard::enter(HookFamily::Residency);
    if !depth.outermost() {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd, allocation) };
    }
    let action = policy(guard, "removeAllocation:", || {
        let bytes = object_length(rt, allocation).unwrap_or(0);
        guard.record_unload_event(bytes);
        match guard.config().residency {
            ResidencyPolicy::Keep => Action::PassThrough,
            ResidencyPolicy::Off => {
                if guard.acts() {
                    guard.stats().residency_noops.fetch_add(1, Relaxed);
                    Action::Skip
                } else {
                    Action::PassThrough
                }
            }
            ResidencyPolicy::Defer => {
                note_once(
                    guard,
                    &NOTED_DEFER,
                    "removals_deferred_until_completion",
                    "would_defer_removals",
                );
                let commit_imp = SET_COMMIT.original_for(rt, this);
                match (guard.acts(), commit_imp) {
                    (true, Some(commit_imp)) => {
                        object_retain(rt, this);
                        object_retain(rt, allocation);
                        let tag = guard.last_committed();
                        let queued = guard.defer_removal(Removal {
                            set: this as usize,
                            allocation: allocation as usize,
                            remove_imp: orig.raw() as usize,
                            commit_imp: commit_imp.raw() as usize,
                            tag,
                            queued_ns: guard.now_ns(),
                        });
                        match queued {
                            Ok(()) => Action::Skip,
                            Err(_) => {
                                // The ring is full (thousands of removals
                                // waiting: never seen in practice). Passing
                                // through at once would race the GPU work
                                // committed before it, the very bug lever
                                // (b) prevents; waiting without bound could
                                // hang the application. So: wait, bounded,
                                // for that work to complete, then perform
                                // the removal here, serialised with the
                                // reaper like any residency call.
                                object_release(rt, allocation);
                                object_release(rt, this);
                                guard.wait_for_completion_through(tag, FULL_RING_WAIT);
                                Action::PassThroughInGate(guard.enter_residency_call())
                            }
                        }
                    }
                    _ => Action::PassThroughInGate(guard.enter_residency_call()),
                }
            }
        }
    })
    .unwrap_or(Action::PassThrough);
    match action {
        Action::Skip => {}
        // SAFETY: the caller's own arguments, passed on to the original.
        Action::PassThrough => unsafe { orig.call(this, cmd, allocation) },
        Action::PassThroughInGate(pass) => {
            // SAFETY: the caller's own arguments, passed on to the original.
            unsafe { orig.call(this, cmd, allocation) };
            drop(pass);
        }
    }
}

unsafe extern "C-unwind" fn set_commit(this: Id, cmd: Sel) {
    let Some((_, orig)) = original(&SET_COMMIT, this) else {
        return;
    };
    let Some(guard) = guard().filter(|g| g.config().residency == ResidencyPolicy::Defer) else {
        // SAFETY: the caller's own arguments, passed on to the original.
        return unsafe { orig.call(this, cmd) };
    };
    let depth = DepthGuard::enter(HookFamily::Residency);
    let pass = if depth.outermost() {
        policy(guard, "commit", || guard.enter_residency_call()).flatten()
    } else {
        None
    };
    // SAFETY: the caller's own arguments, passed on to the original.
    unsafe { orig.call(this, cmd) };
    drop(pass);
}
